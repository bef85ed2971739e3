#include "cc/image_resize.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tfad {
namespace {

struct Tap {
  int lo, hi;
  float frac;  // weight of hi
};

std::vector<Tap> Taps(int src, int dst) {
  std::vector<Tap> taps(static_cast<size_t>(dst));
  const double scale = static_cast<double>(src) / dst;
  for (int i = 0; i < dst; ++i) {
    double x = (i + 0.5) * scale - 0.5;
    x = std::clamp(x, 0.0, static_cast<double>(src - 1));
    const int lo = static_cast<int>(std::floor(x));
    const int hi = std::min(lo + 1, src - 1);
    taps[static_cast<size_t>(i)] = {lo, hi, static_cast<float>(x - lo)};
  }
  return taps;
}

}  // namespace

void ResizeBilinear(const uint8_t* src, int src_h, int src_w, int channels, uint8_t* dst, int dst_h, int dst_w) {
  const std::vector<Tap> ys = Taps(src_h, dst_h);
  const std::vector<Tap> xs = Taps(src_w, dst_w);
  for (int y = 0; y < dst_h; ++y) {
    const Tap& ty = ys[static_cast<size_t>(y)];
    const uint8_t* row_lo = src + static_cast<size_t>(ty.lo) * src_w * channels;
    const uint8_t* row_hi = src + static_cast<size_t>(ty.hi) * src_w * channels;
    for (int x = 0; x < dst_w; ++x) {
      const Tap& tx = xs[static_cast<size_t>(x)];
      for (int c = 0; c < channels; ++c) {
        const float a = row_lo[tx.lo * channels + c], b = row_lo[tx.hi * channels + c];
        const float d = row_hi[tx.lo * channels + c], e = row_hi[tx.hi * channels + c];
        const float top = a + (b - a) * tx.frac;
        const float bottom = d + (e - d) * tx.frac;
        const float v = top + (bottom - top) * ty.frac;
        dst[(static_cast<size_t>(y) * dst_w + x) * channels + c] =
            static_cast<uint8_t>(std::clamp(std::floor(v + 0.5f), 0.0f, 255.0f));
      }
    }
  }
}

}  // namespace tfad
