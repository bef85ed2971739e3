// Times the server's heatmap PNG encoder (cc/png_codec.h) against zlib's run-length deflate without row
// filters, the server's encoder until 2026-12-07, on the same heatmaps: one product's worth per timing,
// rounds in the order A B B A. Both map the floats to gray with tfad::HeatmapToGray, so the ratio is the
// encoders' alone. Driven by benchmarks/heatmap_png.py, which writes the heatmaps.
//
// Usage: heatmap_png_bench HEATMAPS_F32 COUNT HEIGHT WIDTH ROUNDS
// HEATMAPS_F32 holds COUNT x HEIGHT x WIDTH float32 values. Prints one JSON object; exit 2 on bad input,
// 1 if an encoding does not decode (libpng) to the pixels the mapping's definition gives (checked first).
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cc/png_codec.h"

namespace {

using Clock = std::chrono::steady_clock;

uint8_t ExpectedGray(float v) {  // the mapping's definition, written plainly: the check's oracle
  if (std::isnan(v)) v = 1.0f;
  v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
  return static_cast<uint8_t>(v * 255.0f + 0.5f);
}

// The reference: filter "None" on every row, zlib deflate level 1 with Z_RLE.
bool EncodeZlibRle(const float* heatmap, int width, int height, std::string* png) {
  const size_t row = static_cast<size_t>(width) + 1;
  std::vector<uint8_t> gray(static_cast<size_t>(width) * height);
  tfad::HeatmapToGray(heatmap, gray.size(), gray.data());
  std::string raw(row * static_cast<size_t>(height), '\0');
  for (int y = 0; y < height; ++y) {
    std::memcpy(&raw[row * y + 1], gray.data() + static_cast<size_t>(y) * width, static_cast<size_t>(width));
  }
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15, 8, Z_RLE) != Z_OK) return false;
  std::string compressed(deflateBound(&zs, static_cast<uLong>(raw.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(&raw[0]);
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(&compressed[0]);
  zs.avail_out = static_cast<uInt>(compressed.size());
  const int rc = deflate(&zs, Z_FINISH);
  compressed.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return false;
  *png = tfad::GrayPngAround(width, height, compressed);
  return true;
}

bool EncodeServer(const float* heatmap, int width, int height, std::string* png) {
  return tfad::EncodeHeatmapPng(heatmap, width, height, png).ok();
}

using Encoder = bool (*)(const float*, int, int, std::string*);

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: heatmap_png_bench HEATMAPS_F32 COUNT HEIGHT WIDTH ROUNDS\n");
    return 2;
  }
  const long count = std::atol(argv[2]), height = std::atol(argv[3]), width = std::atol(argv[4]);
  const long rounds = std::atol(argv[5]);
  if (count < 1 || height < 1 || width < 1 || height > 8192 || width > 8192 || count > 4096 || rounds < 1) {
    std::fprintf(stderr, "heatmap_png_bench: COUNT, HEIGHT, WIDTH and ROUNDS must be positive (sizes <= 8192)\n");
    return 2;
  }
  const size_t pixels = static_cast<size_t>(height) * width;
  const size_t expected = pixels * static_cast<size_t>(count);
  FILE* f = std::fopen(argv[1], "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "heatmap_png_bench: cannot open %s\n", argv[1]);
    return 2;
  }
  // the file's size first: sizes within the limits could still ask for more memory than the PC has
  std::fseek(f, 0, SEEK_END);
  const long bytes_in_file = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (bytes_in_file < 0 || static_cast<size_t>(bytes_in_file) != expected * sizeof(float)) {
    std::fprintf(stderr, "heatmap_png_bench: %s holds %ld bytes, expected %zu (%zu floats)\n", argv[1], bytes_in_file,
                 expected * sizeof(float), expected);
    std::fclose(f);
    return 2;
  }
  std::vector<float> heatmaps(expected);
  const size_t got = std::fread(heatmaps.data(), sizeof(float), heatmaps.size(), f);
  std::fclose(f);
  if (got != heatmaps.size()) {
    std::fprintf(stderr, "heatmap_png_bench: %s: read %zu floats, expected %zu\n", argv[1], got, expected);
    return 2;
  }
  const Encoder encoders[2] = {EncodeServer, EncodeZlibRle};
  size_t bytes[2] = {0, 0};
  std::string png;
  for (int e = 0; e < 2; ++e) {  // both must decode to the same 8-bit pixels
    for (long i = 0; i < count; ++i) {
      const float* h = heatmaps.data() + pixels * i;
      tfad::PngInfo info;
      std::vector<uint8_t> decoded;
      if (!encoders[e](h, static_cast<int>(width), static_cast<int>(height), &png) ||
          !tfad::DecodePng(png, static_cast<int64_t>(pixels), &info, &decoded).ok() || decoded.size() != pixels) {
        std::fprintf(stderr, "heatmap_png_bench: encoder %d: heatmap %ld does not decode\n", e, i);
        return 1;
      }
      for (size_t p = 0; p < pixels; ++p) {
        if (decoded[p] != ExpectedGray(h[p])) {
          std::fprintf(stderr, "heatmap_png_bench: encoder %d: heatmap %ld pixel %zu differs\n", e, i, p);
          return 1;
        }
      }
      bytes[e] += png.size();
    }
  }
  std::vector<double> ms[2], ratios;
  for (long r = 0; r < rounds; ++r) {
    double pair[2] = {0, 0};
    for (int k = 0; k < 4; ++k) {  // A B B A
      const int e = (k == 1 || k == 2) ? 1 : 0;
      const auto start = Clock::now();
      for (long i = 0; i < count; ++i) {
        encoders[e](heatmaps.data() + pixels * i, static_cast<int>(width), static_cast<int>(height), &png);
      }
      const double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      ms[e].push_back(elapsed);
      pair[e] += elapsed;
    }
    ratios.push_back(pair[0] / pair[1]);
  }
  std::printf(
      "{\"heatmaps\": %ld, \"height\": %ld, \"width\": %ld, \"rounds\": %ld,\n"
      " \"server\": {\"p50_ms\": %.3f, \"min_ms\": %.3f, \"bytes\": %zu},\n"
      " \"zlib_rle\": {\"p50_ms\": %.3f, \"min_ms\": %.3f, \"bytes\": %zu},\n"
      " \"paired_ratio_median\": %.4f, \"paired_ratio_min\": %.4f, \"paired_ratio_max\": %.4f}\n",
      count, height, width, rounds, Median(ms[0]), *std::min_element(ms[0].begin(), ms[0].end()), bytes[0],
      Median(ms[1]), *std::min_element(ms[1].begin(), ms[1].end()), bytes[1], Median(ratios),
      *std::min_element(ratios.begin(), ratios.end()), *std::max_element(ratios.begin(), ratios.end()));
  return 0;
}
