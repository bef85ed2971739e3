#include "cc/png_codec.h"

#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace tfad {
namespace {

TEST(PngCodecTest, GrayRoundTrip) {
  std::vector<uint8_t> pixels(37 * 23);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i * 7) & 0xff);
  std::string png;
  ASSERT_TRUE(EncodeGrayPng(pixels.data(), 37, 23, &png).ok());
  PngInfo info;
  std::vector<uint8_t> decoded;
  Status s = DecodePng(png, 1 << 20, &info, &decoded);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(info.width, 37);
  EXPECT_EQ(info.height, 23);
  EXPECT_EQ(info.channels, 1);
  EXPECT_EQ(decoded, pixels);
}

TEST(PngCodecTest, HeatmapIsScaledClampedAndRounded) {
  const float heatmap[6] = {0.0f, 1.0f, 0.5f, -3.0f, 7.0f, std::nanf("")};
  std::string png;
  ASSERT_TRUE(EncodeHeatmapPng(heatmap, 3, 2, &png).ok());
  PngInfo info;
  std::vector<uint8_t> decoded;
  ASSERT_TRUE(DecodePng(png, 100, &info, &decoded).ok());
  EXPECT_EQ(decoded, (std::vector<uint8_t>{0, 255, 128, 0, 255, 255}));

  const float edges[6] = {INFINITY, -INFINITY, std::nanf(""), 0.001f, 0.998f, 0.502f};
  ASSERT_TRUE(EncodeHeatmapPng(edges, 6, 1, &png).ok());
  ASSERT_TRUE(DecodePng(png, 100, &info, &decoded).ok());
  EXPECT_EQ(decoded, (std::vector<uint8_t>{255, 0, 255, 0, 254, 128}));
}

// The mapping's definition, one value at a time (the scalar loop of HeatmapToGray).
uint8_t GrayOf(float h) {
  float v = h < 1.0f ? h : 1.0f;
  v = v > 0.0f ? v : 0.0f;
  return static_cast<uint8_t>(static_cast<int>(v * 255.0f + 0.5f));
}

TEST(PngCodecTest, HeatmapToGrayEqualsItsDefinitionForEveryLengthAndSpecialValue) {
  // Special values at every position of a 16-value step, and lengths around the step (the vector loop and
  // its scalar tail), then every rounding boundary k/255 +- 1 ulp and a sweep of random bit patterns.
  std::vector<float> values = {0.0f, -0.0f, 1.0f, 0.5f, std::nanf(""), -std::nanf(""), INFINITY, -INFINITY,
                               1e-45f, -1e-45f, 1.0000001f, 0.99999994f, 2.0f / 255.0f, 254.5f / 255.0f,
                               -1e30f, 1e30f, 0.5f / 255.0f, 1.5f / 255.0f};
  for (int k = 0; k <= 255; ++k) {
    const float boundary = (static_cast<float>(k) + 0.5f) / 255.0f;
    values.push_back(boundary);
    values.push_back(std::nextafter(boundary, 0.0f));
    values.push_back(std::nextafter(boundary, 2.0f));
  }
  uint32_t state = 12345;
  for (int k = 0; k < 20000; ++k) {
    state = state * 1664525u + 1013904223u;
    float f;
    std::memcpy(&f, &state, sizeof(f));
    values.push_back(f);
    values.push_back(static_cast<float>(state % 2000) / 1000.0f - 0.5f);  // mostly inside [0, 1]
  }
  for (size_t length : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{33}, values.size()}) {
    for (size_t offset : {size_t{0}, size_t{3}}) {  // unaligned starts too
      if (offset + length > values.size()) continue;
      std::vector<uint8_t> gray(length + 1, 77);  // one guard byte: nothing is written past the end
      HeatmapToGray(values.data() + offset, length, gray.data());
      for (size_t i = 0; i < length; ++i) {
        ASSERT_EQ(gray[i], GrayOf(values[offset + i])) << "value " << values[offset + i] << " at " << i
                                                       << " of " << length;
      }
      EXPECT_EQ(gray[length], 77);
    }
  }
}

TEST(PngCodecTest, DecodesRgbWithLibpngWrittenFile) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = 4;
  image.height = 2;
  image.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> rgb(4 * 2 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 10);
  png_alloc_size_t size = 0;
  ASSERT_TRUE(png_image_write_to_memory(&image, nullptr, &size, 0, rgb.data(), 0, nullptr));
  std::string png(size, '\0');
  ASSERT_TRUE(png_image_write_to_memory(&image, png.data(), &size, 0, rgb.data(), 0, nullptr));
  png.resize(size);
  PngInfo info;
  std::vector<uint8_t> decoded;
  ASSERT_TRUE(DecodePng(png, 100, &info, &decoded).ok());
  EXPECT_EQ(info.channels, 3);
  EXPECT_EQ(decoded, rgb);
}

TEST(PngCodecTest, RejectsNonPngAndTruncatedPng) {
  PngInfo info;
  std::vector<uint8_t> decoded;
  Status s = DecodePng("definitely not a png", 100, &info, &decoded);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a PNG"), std::string::npos);

  std::vector<uint8_t> pixels(64 * 64, 7);
  std::string png;
  ASSERT_TRUE(EncodeGrayPng(pixels.data(), 64, 64, &png).ok());
  s = DecodePng(png.substr(0, png.size() / 2), 1 << 20, &info, &decoded);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("PNG"), std::string::npos) << s.message();
}

TEST(PngCodecTest, RefusesImagesAbovePixelLimitBeforeDecoding) {
  std::vector<uint8_t> pixels(100 * 100, 1);
  std::string png;
  ASSERT_TRUE(EncodeGrayPng(pixels.data(), 100, 100, &png).ok());
  PngInfo info;
  std::vector<uint8_t> decoded;
  Status s = DecodePng(png, 9999, &info, &decoded);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("pixel limit"), std::string::npos) << s.message();
  EXPECT_TRUE(decoded.empty());
}

}  // namespace
}  // namespace tfad
