// Resizes raw uint8 images with cc/image_resize.cc, for the cross-check against the Python server's
// resize (tests/serving/test_resize_parity.py): both servers must feed a model identical pixels.
//
// Usage: resize_bilinear_tool < cases > outputs
// Input, repeated until end of file: a line "src_h src_w channels dst_h dst_w\n" then src_h*src_w*channels
// bytes. Output: dst_h*dst_w*channels bytes per case, in order. Exit 2 on malformed input.
#include <cstdio>
#include <vector>

#include "cc/image_resize.h"

int main() {
  int src_h = 0, src_w = 0, channels = 0, dst_h = 0, dst_w = 0;
  while (std::scanf("%d %d %d %d %d", &src_h, &src_w, &channels, &dst_h, &dst_w) == 5) {
    if (std::fgetc(stdin) != '\n' || src_h < 1 || src_w < 1 || channels < 1 || dst_h < 1 || dst_w < 1 ||
        src_h > 8192 || src_w > 8192 || dst_h > 8192 || dst_w > 8192 || channels > 4) {
      std::fprintf(stderr, "resize_bilinear_tool: malformed case header\n");
      return 2;
    }
    std::vector<uint8_t> src(static_cast<size_t>(src_h) * src_w * channels);
    if (std::fread(src.data(), 1, src.size(), stdin) != src.size()) {
      std::fprintf(stderr, "resize_bilinear_tool: truncated image\n");
      return 2;
    }
    std::vector<uint8_t> dst(static_cast<size_t>(dst_h) * dst_w * channels);
    tfad::ResizeBilinear(src.data(), src_h, src_w, channels, dst.data(), dst_h, dst_w);
    std::fwrite(dst.data(), 1, dst.size(), stdout);
  }
  return 0;
}
