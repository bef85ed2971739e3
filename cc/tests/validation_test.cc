#include "cc/validation.h"

#include <gtest/gtest.h>

#include "cc/png_codec.h"
#include "cc/tests/test_util.h"

namespace tfad {
namespace {

namespace pb = tfad::inspection::v1;
using testing::AddRawPatch;

class ValidationTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(ParseManifest(testing::ManifestJson("vials", 1, 8, 8, 1), &manifest_).ok()); }
  Status Validate(const pb::InspectRequest& r) { return ValidateAndDecode(r, manifest_, limits_, &batch_); }
  static bool Contains(const Status& s, const std::string& text) { return s.message().find(text) != std::string::npos; }

  Manifest manifest_;
  RequestLimits limits_;
  DecodedBatch batch_;
};

TEST_F(ValidationTest, AcceptsRawPatchesAndBatchesThemInOrder) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1, 11, 0);
  AddRawPatch(&r, "R1", 8, 8, 1, 22, 1);
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_EQ(batch_.n, 2);
  EXPECT_EQ(batch_.pixels.size(), 2u * 64u);
  EXPECT_EQ(batch_.pixels[0], 11);
  EXPECT_EQ(batch_.pixels[64], 22);
  EXPECT_FLOAT_EQ(batch_.thresholds[0], 0.5f);
  EXPECT_FLOAT_EQ(batch_.thresholds[1], 0.25f);
}

TEST_F(ValidationTest, EmptyProduct) {
  pb::InspectRequest r;
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "no patches")) << s.message();
}

TEST_F(ValidationTest, TooManyPatches) {
  limits_.max_patches = 2;
  pb::InspectRequest r;
  for (uint32_t v = 0; v < 3; ++v) AddRawPatch(&r, "R0", 8, 8, 1, 1, v);
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "3 patches")) << s.message();
}

TEST_F(ValidationTest, WrongByteCountNamesPatchRegionAndSizes) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1, 1, 0);
  AddRawPatch(&r, "R1", 8, 8, 1, 1, 1)->mutable_data()->pop_back();
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "patch 1 (region R1")) << s.message();
  EXPECT_TRUE(Contains(s, "63 bytes for 8x8x1, expected 64")) << s.message();
}

TEST_F(ValidationTest, PatchBytesLimit) {
  limits_.max_patch_bytes = 10;
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1);
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "--max_patch_bytes")) << s.message();
}

TEST_F(ValidationTest, UnknownRegionListsKnownOnes) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R7", 8, 8, 1);
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "unknown region 'R7'")) << s.message();
  EXPECT_TRUE(Contains(s, "R0, R1")) << s.message();
}

TEST_F(ValidationTest, EmptyRegion) {
  pb::InspectRequest r;
  AddRawPatch(&r, "", 8, 8, 1);
  EXPECT_TRUE(Contains(Validate(r), "region is empty"));
}

TEST_F(ValidationTest, WrongChannels) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 3);
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "3 (RGB) channels")) << s.message();
}

TEST_F(ValidationTest, WrongSizeUnderRejectPolicy) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 4, 8, 1);
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "resize policy is \"reject\"")) << s.message();
}

TEST_F(ValidationTest, WrongSizeIsResizedUnderBilinearPolicy) {
  manifest_.resize = ResizePolicy::kBilinear;
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 4, 16, 1, 77);
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_EQ(batch_.resized, 1);
  for (size_t i = 0; i < 64; ++i) EXPECT_EQ(batch_.pixels[i], 77);
}

TEST_F(ValidationTest, MissingDimensionsAndEncoding) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1)->set_width(0);
  EXPECT_TRUE(Contains(Validate(r), "needs width, height and channels"));
  r.Clear();
  AddRawPatch(&r, "R0", 8, 8, 1)->set_encoding(pb::IMAGE_ENCODING_UNSPECIFIED);
  EXPECT_TRUE(Contains(Validate(r), "encoding not set"));
}

TEST_F(ValidationTest, DuplicatePatch) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1, 1, 2);
  AddRawPatch(&r, "R0", 8, 8, 1, 1, 2);
  EXPECT_TRUE(Contains(Validate(r), "duplicate patch"));
}

TEST_F(ValidationTest, PngPatchDecodesAndCorruptPngIsRefused) {
  std::vector<uint8_t> pixels(64);
  for (size_t i = 0; i < 64; ++i) pixels[i] = static_cast<uint8_t>(i);
  std::string png;
  ASSERT_TRUE(EncodeGrayPng(pixels.data(), 8, 8, &png).ok());
  pb::InspectRequest r;
  auto* p = r.add_patches();
  p->set_region("R1");
  p->set_encoding(pb::IMAGE_ENCODING_PNG);
  p->set_data(png);
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_EQ(batch_.pixels, pixels);

  p->set_data(png.substr(0, 30));
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "patch 0 (region R1")) << s.message();
  EXPECT_TRUE(Contains(s, "PNG")) << s.message();
}

TEST_F(ValidationTest, PngDeclaredSizeMustAgree) {
  std::vector<uint8_t> pixels(64, 3);
  std::string png;
  ASSERT_TRUE(EncodeGrayPng(pixels.data(), 8, 8, &png).ok());
  pb::InspectRequest r;
  auto* p = r.add_patches();
  p->set_region("R0");
  p->set_encoding(pb::IMAGE_ENCODING_PNG);
  p->set_data(png);
  p->set_width(16);
  EXPECT_TRUE(Contains(Validate(r), "but the patch declares"));
}

}  // namespace
}  // namespace tfad
