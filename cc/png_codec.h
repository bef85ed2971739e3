// PNG decode (8-bit gray / gray+alpha / RGB / RGBA / palette) and 8-bit gray encode, with libpng 1.6's
// simplified API (no setjmp/longjmp through C++ frames).
#ifndef TFAD_CC_PNG_CODEC_H_
#define TFAD_CC_PNG_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc/status.h"

namespace tfad {

struct PngInfo {
  int width = 0;
  int height = 0;
  int channels = 0;  // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (palette images report 3 or 4)
  bool sixteen_bit = false;
};

// Reads only the header (cheap): size and channels, so limits are checked before allocating pixels.
Status ReadPngInfo(const std::string& png, PngInfo* info);

// Decodes to 8-bit interleaved pixels with the PNG's own channel count. 16-bit PNGs are refused (their
// conversion to 8 bit would be a gamma-dependent guess). `max_pixels` bounds width*height.
Status DecodePng(const std::string& png, int64_t max_pixels, PngInfo* info, std::vector<uint8_t>* pixels);

// Encodes an 8-bit single-channel image (row-major, width*height bytes).
Status EncodeGrayPng(const uint8_t* pixels, int width, int height, std::string* png);

// The 8-bit gray PNG file around `zlib_rows`: a zlib stream of `height` rows, each a PNG filter byte and
// `width` filtered bytes (what EncodeGrayPng compresses; benchmarks compress it other ways).
std::string GrayPngAround(int width, int height, const std::string& zlib_rows);

// A heatmap in [0, 1] as 8-bit gray: values outside are clamped, NaN becomes 1, then (uint8)(v * 255 + 0.5) in
// float32, as the Python server computes it.
void HeatmapToGray(const float* heatmap, size_t count, uint8_t* gray);

// Encodes a heatmap (HeatmapToGray) as an 8-bit gray PNG.
Status EncodeHeatmapPng(const float* heatmap, int width, int height, std::string* png);

}  // namespace tfad

#endif  // TFAD_CC_PNG_CODEC_H_
