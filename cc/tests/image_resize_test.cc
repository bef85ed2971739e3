#include "cc/image_resize.h"

#include <gtest/gtest.h>

#include <vector>

namespace tfad {
namespace {

TEST(ImageResizeTest, SameSizeIsIdentity) {
  std::vector<uint8_t> src(5 * 4 * 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 3);
  std::vector<uint8_t> dst(src.size());
  ResizeBilinear(src.data(), 4, 5, 3, dst.data(), 4, 5);
  EXPECT_EQ(dst, src);
}

TEST(ImageResizeTest, ConstantImageStaysConstant) {
  std::vector<uint8_t> src(7 * 9, 42), dst(16 * 3);
  ResizeBilinear(src.data(), 7, 9, 1, dst.data(), 3, 16);
  for (uint8_t v : dst) EXPECT_EQ(v, 42);
}

TEST(ImageResizeTest, UpscaleUsesHalfPixelCentres) {
  // 1x2 -> 1x4: source x = (i + 0.5) / 2 - 0.5 = -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1).
  const uint8_t src[2] = {0, 100};
  uint8_t dst[4];
  ResizeBilinear(src, 1, 2, 1, dst, 1, 4);
  EXPECT_EQ(dst[0], 0);
  EXPECT_EQ(dst[1], 25);
  EXPECT_EQ(dst[2], 75);
  EXPECT_EQ(dst[3], 100);
}

TEST(ImageResizeTest, DownscaleByTwoAveragesPairs) {
  // 1x4 -> 1x2: source x = 0.5 and 2.5: the mean of each pair (rounded half up).
  const uint8_t src[4] = {10, 21, 30, 50};
  uint8_t dst[2];
  ResizeBilinear(src, 1, 4, 1, dst, 1, 2);
  EXPECT_EQ(dst[0], 16);  // 15.5 -> 16
  EXPECT_EQ(dst[1], 40);
}

}  // namespace
}  // namespace tfad
