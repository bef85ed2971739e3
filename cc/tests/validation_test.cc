#include "cc/validation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

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

// The batch lists the patches whose pixels, as the model gets them, all have one value (the service decides).
TEST_F(ValidationTest, BlankPatchesAreListed) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1, 0, 0);
  AddRawPatch(&r, "R0", 8, 8, 1, 7, 1)->mutable_data()->back() = 8;  // one pixel differs: an image
  AddRawPatch(&r, "R1", 8, 8, 1, 255, 2);
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_EQ(batch_.blank, (std::vector<int>{0, 2}));
  r.Clear();
  AddRawPatch(&r, "R0", 8, 8, 1, 7)->mutable_data()->front() = 8;
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_TRUE(batch_.blank.empty());
  // RGB: blank when every pixel has the first pixel's three values, even when they differ from each other
  ASSERT_TRUE(ParseManifest(testing::ManifestJson("vials", 1, 8, 8, 3), &manifest_).ok());
  r.Clear();
  std::string red;
  for (int k = 0; k < 64; ++k) red += std::string("\xff\x00\x00", 3);
  AddRawPatch(&r, "R0", 8, 8, 3, 0, 0)->set_data(red);
  std::string almost = red;
  almost[100] = '\x01';  // pixel 33's green value
  AddRawPatch(&r, "R0", 8, 8, 3, 0, 1)->set_data(almost);
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_EQ(batch_.blank, (std::vector<int>{0}));
}

// The acquisition check's statistics: every pixel, all channels pooled, mean and population std from exact sums.
TEST(PixelMeanStdTest, IsTheMeanAndPopulationStdOfTheValues) {
  std::vector<uint8_t> half(64, 0);
  std::fill(half.begin() + 32, half.end(), 255);
  double mean = 0, stddev = 0;
  PixelMeanStd(half.data(), half.size(), &mean, &stddev);
  EXPECT_DOUBLE_EQ(mean, 127.5);
  EXPECT_DOUBLE_EQ(stddev, 127.5);
  const uint8_t odd[] = {0, 255, 255};  // fewer values than one vectorised chunk
  PixelMeanStd(odd, 3, &mean, &stddev);
  EXPECT_EQ(mean, 170.0);
  EXPECT_EQ(stddev, std::sqrt(14450.0));  // 65025 * 2 / 3 - 170^2
  const std::vector<uint8_t> flat(64, 9);
  PixelMeanStd(flat.data(), flat.size(), &mean, &stddev);
  EXPECT_EQ(mean, 9.0);
  EXPECT_EQ(stddev, 0.0);  // var exactly 0, never a rounding residue
  // 1000 ramps 0..255 (256000 values): sums cross the uint32 blocks and sumsq exceeds 2^32; var = (256^2 - 1) / 12
  std::vector<uint8_t> ramps(256000);
  for (size_t k = 0; k < ramps.size(); ++k) ramps[k] = static_cast<uint8_t>(k % 256);
  PixelMeanStd(ramps.data(), ramps.size(), &mean, &stddev);
  EXPECT_EQ(mean, 127.5);
  EXPECT_EQ(stddev, std::sqrt(5461.25));
  const std::vector<uint8_t> white(300000, 255);  // squares of 255 in full blocks: no overflow
  PixelMeanStd(white.data(), white.size(), &mean, &stddev);
  EXPECT_EQ(mean, 255.0);
  EXPECT_EQ(stddev, 0.0);
}

// With an acquisition_check in the manifest, the batch has each patch's mean and std as the model gets it;
// without one they are not computed.
TEST_F(ValidationTest, PatchStatsOnlyForAManifestWithAnAcquisitionCheck) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1, 0, 0)->mutable_data()->replace(32, 32, 32, '\xff');  // half 0, half 255
  AddRawPatch(&r, "R1", 8, 8, 1, 40, 1);
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_TRUE(batch_.pixel_mean.empty());
  EXPECT_TRUE(batch_.pixel_std.empty());
  ASSERT_TRUE(ParseManifest(testing::WithAcquisitionCheck(testing::ManifestJson("vials", 1, 8, 8, 1)), &manifest_)
                  .ok());
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_EQ(batch_.pixel_mean, (std::vector<double>{127.5, 40.0}));
  EXPECT_EQ(batch_.pixel_std, (std::vector<double>{127.5, 0.0}));
  // RGB: the three channels pooled (every pixel (0, 255, 0): mean 85, var 65025 / 3 - 85^2 = 14450)
  ASSERT_TRUE(ParseManifest(testing::WithAcquisitionCheck(testing::ManifestJson("vials", 1, 8, 8, 3)), &manifest_)
                  .ok());
  r.Clear();
  std::string green;
  for (int k = 0; k < 64; ++k) green += std::string("\x00\xff\x00", 3);
  AddRawPatch(&r, "R0", 8, 8, 3)->set_data(green);
  ASSERT_TRUE(Validate(r).ok());
  EXPECT_EQ(batch_.pixel_mean, (std::vector<double>{85.0}));
  EXPECT_EQ(batch_.pixel_std, (std::vector<double>{std::sqrt(14450.0)}));
}

// The statistics are of the patch the model gets: after the bilinear resize, not of the image sent.
TEST_F(ValidationTest, PatchStatsAreOfTheResizedPatch) {
  ASSERT_TRUE(ParseManifest(testing::WithAcquisitionCheck(testing::ManifestJson("vials", 1, 8, 8, 1, "bilinear")),
                            &manifest_)
                  .ok());
  pb::InspectRequest r;
  std::string stripes;  // 16x8, columns alternately 0 and 255: mean 127.5, std 127.5 as sent
  for (int k = 0; k < 16 * 8; ++k) stripes += static_cast<char>(k % 2 ? 255 : 0);
  AddRawPatch(&r, "R0", 16, 8, 1)->set_data(stripes);
  ASSERT_TRUE(Validate(r).ok());
  ASSERT_EQ(batch_.resized, 1);
  double mean = 0, stddev = 0;
  PixelMeanStd(batch_.pixels.data(), 64, &mean, &stddev);
  EXPECT_EQ(batch_.pixel_mean, (std::vector<double>{mean}));
  EXPECT_EQ(batch_.pixel_std, (std::vector<double>{stddev}));
  EXPECT_LT(batch_.pixel_std[0], 1.0);  // halving blends each pair of columns into one gray
  EXPECT_NEAR(batch_.pixel_mean[0], 127.5, 0.5);
}

// A thumbnail or a mis-cut frame is not stretched into a plausible patch and scored (it could be accepted):
// the bilinear policy resizes within kMaxResizeFactor (2x) of the model's size on each side, inclusive.
TEST_F(ValidationTest, BilinearPolicyRefusesSizesBeyondTwiceOrHalfTheModels) {
  manifest_.resize = ResizePolicy::kBilinear;  // the model takes 8x8x1
  const struct {
    int w, h;
    bool ok;
  } cases[] = {{4, 4, true}, {16, 16, true}, {4, 16, true}, {9, 7, true}, {3, 8, false}, {8, 3, false},
               {17, 8, false}, {8, 17, false}, {1, 1, false}, {64, 64, false}, {16, 1, false}};
  for (const auto& k : cases) {
    pb::InspectRequest r;
    AddRawPatch(&r, "R0", k.w, k.h, 1, 9);
    const Status s = Validate(r);
    EXPECT_EQ(s.ok(), k.ok) << k.w << "x" << k.h << ": " << s.message();
    if (!k.ok) {
      EXPECT_TRUE(Contains(s, "image is " + std::to_string(k.w) + "x" + std::to_string(k.h) + "x1 but model"))
          << s.message();
      EXPECT_TRUE(Contains(s, "resizes widths 4-16 and heights 4-16 only (at most 2x either way)")) << s.message();
    }
  }
  // a PNG is checked the same way after its header
  pb::InspectRequest r;
  pb::Patch* p = r.add_patches();
  p->set_region("R0");
  p->set_encoding(pb::IMAGE_ENCODING_PNG);
  std::string png;
  ASSERT_TRUE(EncodeGrayPng(std::vector<uint8_t>(3 * 3, 5).data(), 3, 3, &png).ok());
  p->set_data(png);
  EXPECT_TRUE(Contains(Validate(r), "image is 3x3x1 but model")) << Validate(r).message();
}

// Found by benchmarks/abuse_campaign.py: width x height x channels wrapped in signed 64-bit arithmetic, so
// a 41 KB patch declaring 4294887032x2863365041x3 passed every check on an RGB bilinear model and the
// resize read far outside the buffer (SIGSEGV). Huge declared sizes are refused by the pixel limit.
TEST_F(ValidationTest, DimensionsWhoseProductWrapsAreRefusedByThePixelLimit) {
  ASSERT_TRUE(ParseManifest(testing::ManifestJson("vials", 1, 8, 8, 3, "bilinear"), &manifest_).ok());
  const struct {
    uint32_t w, h, c;
    size_t bytes;
  } cases[] = {
      {4294887032u, 2863365041u, 3, 41704},  // the campaign's request
      {4294967295u, 4294967295u, 3, 3},
      {4294967295u, 4294967295u, 1, 65536},
      {65536, 65536, 3, 12},  // exactly 2^32 pixels
  };
  for (const auto& k : cases) {
    pb::InspectRequest r;
    pb::Patch* p = AddRawPatch(&r, "R0", 8, 8, 3, 1);
    p->set_width(k.w);
    p->set_height(k.h);
    p->set_channels(k.c);
    p->set_data(std::string(k.bytes, '\x01'));
    const Status s = Validate(r);
    ASSERT_FALSE(s.ok()) << k.w << "x" << k.h << "x" << k.c;
    EXPECT_TRUE(Contains(s, "-pixel limit (--max_image_pixels)")) << s.message();
    EXPECT_TRUE(batch_.pixels.empty());
  }
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

// --- resource limits (issue 14 item 5) ---------------------------------------------------------------------

TEST_F(ValidationTest, IdsAreAtMost128PrintableBytesAndNeverEchoed) {
  using Setter = void (pb::InspectRequest::*)(const std::string&);
  const std::vector<std::pair<std::string, Setter>> fields = {
      {"product_id", static_cast<Setter>(&pb::InspectRequest::set_product_id)},
      {"run_id", static_cast<Setter>(&pb::InspectRequest::set_run_id)},
      {"station_id", static_cast<Setter>(&pb::InspectRequest::set_station_id)},
      {"model_name", static_cast<Setter>(&pb::InspectRequest::set_model_name)}};
  for (const auto& [field, set] : fields) {
    pb::InspectRequest r;
    AddRawPatch(&r, "R0", 8, 8, 1);
    (r.*set)(std::string(128, 'a'));
    EXPECT_TRUE(Validate(r).ok()) << field;
    (r.*set)(std::string(129, 'Q'));
    Status s = Validate(r);
    ASSERT_FALSE(s.ok()) << field;
    EXPECT_EQ(s.message(), field + " is 129 bytes; at most 128 allowed");
    EXPECT_FALSE(Contains(s, "QQ")) << s.message();
    (r.*set)(std::string("P1\nforged=1"));
    s = Validate(r);
    ASSERT_FALSE(s.ok()) << field;
    EXPECT_EQ(s.message(), field + " has a byte that is not printable ASCII (0x0a at offset 2)");
  }
}

TEST_F(ValidationTest, OverlongRegionIsRefusedWithoutEcho) {
  manifest_.default_threshold = 0.5f;  // any region is known: only the length check can refuse it
  pb::InspectRequest r;
  AddRawPatch(&r, std::string(128, 'r'), 8, 8, 1);
  ASSERT_TRUE(Validate(r).ok());
  AddRawPatch(&r, std::string(5000, 'Z'), 8, 8, 1, 1, 1);
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "patch 1 (frame 0, vial 1): region is 5000 bytes; at most 128 allowed");
}

TEST_F(ValidationTest, UnknownHeatmapModeIsRefusedNamingFieldAndValue) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1);
  r.set_heatmaps(pb::HEATMAP_MODE_ALL);
  ASSERT_TRUE(Validate(r).ok());
  r.set_heatmaps(static_cast<pb::HeatmapMode>(7));  // proto3 keeps unknown enum numbers
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "heatmaps: unknown HeatmapMode value 7")) << s.message();
}

TEST_F(ValidationTest, UnknownEncodingValueIsRefusedNamingTheValue) {
  pb::InspectRequest r;
  AddRawPatch(&r, "R0", 8, 8, 1)->set_encoding(static_cast<pb::ImageEncoding>(9));
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "patch 0 (region R0, frame 0, vial 0): unknown ImageEncoding value 9")) << s.message();
}

// A product whose last patch is invalid must not cost n * H * W * C bytes of batch first.
TEST_F(ValidationTest, BatchBufferIsAllocatedOnlyAfterEveryPatchIsChecked) {
  pb::InspectRequest r;
  for (uint32_t v = 0; v < 4; ++v) AddRawPatch(&r, "R0", 8, 8, 1, 1, v);
  AddRawPatch(&r, "R0", 8, 8, 1, 1, 4)->mutable_data()->pop_back();  // wrong byte count, last patch
  Status s = Validate(r);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "patch 4")) << s.message();
  EXPECT_EQ(batch_.pixels.capacity(), 0u);

  r.mutable_patches(4)->set_region("R9");  // unknown region: also found before the allocation
  ASSERT_FALSE(Validate(r).ok());
  EXPECT_EQ(batch_.pixels.capacity(), 0u);

  // A raw patch of the wrong size after a PNG patch: refused before the PNG is decoded or the batch exists.
  std::vector<uint8_t> pixels(64, 9);
  std::string png;
  ASSERT_TRUE(EncodeGrayPng(pixels.data(), 8, 8, &png).ok());
  pb::InspectRequest mixed;
  auto* p = mixed.add_patches();
  p->set_region("R0");
  p->set_encoding(pb::IMAGE_ENCODING_PNG);
  p->set_data(png);
  AddRawPatch(&mixed, "R1", 4, 8, 1);
  s = Validate(mixed);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "patch 1 (region R1")) << s.message();
  EXPECT_EQ(batch_.pixels.capacity(), 0u);
}

// The default gRPC message limit holds the largest request validation can accept (every field at its
// longest encoding), and 8 RPC threads of it stay a modest share of a 24 GB line PC.
TEST(RequestSizeTest, DefaultMessageLimitHoldsTheLargestLegalRequest) {
  const RequestLimits limits;
  auto request_of = [&](int n) {
    pb::InspectRequest r;
    r.set_product_id(std::string(kMaxIdBytes, 'p'));
    r.set_run_id(std::string(kMaxIdBytes, 'r'));
    r.set_station_id(std::string(kMaxIdBytes, 's'));
    r.set_model_name(std::string(kMaxIdBytes, 'm'));
    r.set_heatmaps(pb::HEATMAP_MODE_ALL);
    for (int i = 0; i < n; ++i) {
      pb::Patch* p = r.add_patches();
      p->set_region(std::string(kMaxIdBytes, 'g'));
      p->set_frame(UINT32_MAX);
      p->set_vial(UINT32_MAX);
      p->set_width(UINT32_MAX);
      p->set_height(UINT32_MAX);
      p->set_channels(UINT32_MAX);
      p->set_encoding(pb::IMAGE_ENCODING_PNG);
      p->set_data(std::string(static_cast<size_t>(limits.max_patch_bytes), '\xff'));
    }
    return static_cast<int64_t>(r.ByteSizeLong());
  };
  // Serialized size is affine in the patch count: measure one and two patches, extrapolate to max_patches.
  const int64_t one = request_of(1), two = request_of(2);
  const int64_t per_patch = two - one, fixed = one - per_patch;
  const int64_t largest = fixed + per_patch * limits.max_patches;
  EXPECT_LE(per_patch, limits.max_patch_bytes + kPatchOverheadBytes);
  EXPECT_LE(fixed, kRequestOverheadBytes);
  EXPECT_LE(largest, LargestLegalRequestBytes(limits));
  EXPECT_EQ(LargestLegalRequestBytes(limits), 256 * (262144 + 256) + 4096);
  EXPECT_EQ(DefaultMaxMessageBytes(limits), 66 << 20);
  EXPECT_GE(DefaultMaxMessageBytes(limits), largest + kMessageMarginBytes);
  EXPECT_EQ(DefaultMaxMessageBytes(RequestLimits{100000, int64_t{1} << 30, 1}), kMaxMessageBytesCap);
}

}  // namespace
}  // namespace tfad
