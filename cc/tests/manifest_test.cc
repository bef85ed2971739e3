#include "cc/manifest.h"

#include <gtest/gtest.h>

#include "cc/tests/test_util.h"

namespace tfad {
namespace {

using testing::ManifestJson;

TEST(ManifestTest, ParsesTheContractExample) {
  Manifest m;
  Status s = ParseManifest(ManifestJson("vials", 3, 256, 128, 1, "bilinear"), &m);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(m.name, "vials");
  EXPECT_EQ(m.version, 3);
  EXPECT_EQ(m.height, 256);
  EXPECT_EQ(m.width, 128);
  EXPECT_EQ(m.channels, 1);
  EXPECT_EQ(m.resize, ResizePolicy::kBilinear);
  EXPECT_FALSE(m.reject_blank_patches);  // absent: manifests older than the field score blank patches
  EXPECT_EQ(m.signature_input, "images");
  EXPECT_FLOAT_EQ(m.region_thresholds.at("R0"), 0.5f);
  EXPECT_FALSE(m.default_threshold.has_value());
  EXPECT_EQ(m.RegionList(), "R0, R1");
}

// preprocessing.blank_patches: "reject" or "inspect"; anything else is an error naming the field and the value.
TEST(ManifestTest, BlankPatchesIsRejectOrInspect) {
  const std::string thresholds = R"({"policy": "max-accuracy", "regions": {"R0": 0.5}})";
  Manifest m;
  ASSERT_TRUE(ParseManifest(ManifestJson("vials", 1, 8, 8, 1, "reject", thresholds, "reject"), &m).ok());
  EXPECT_TRUE(m.reject_blank_patches);
  ASSERT_TRUE(ParseManifest(ManifestJson("vials", 1, 8, 8, 1, "reject", thresholds, "inspect"), &m).ok());
  EXPECT_FALSE(m.reject_blank_patches);
  const Status s = ParseManifest(ManifestJson("vials", 1, 8, 8, 1, "reject", thresholds, "ignore"), &m);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "manifest: preprocessing.blank_patches is \"ignore\", must be \"reject\" or \"inspect\"");
}

// acquisition_check absent or null (manifests older than the block): no check.
TEST(ManifestTest, AcquisitionCheckAbsentOrNullMeansNoCheck) {
  Manifest m;
  ASSERT_TRUE(ParseManifest(ManifestJson(), &m).ok());
  EXPECT_FALSE(m.acquisition_check.has_value());
  const Status s = ParseManifest(testing::WithAcquisitionCheck(ManifestJson(), "null"), &m);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_FALSE(m.acquisition_check.has_value());
}

// Each listed region has its limits, every other region the default's; "rule" is free text.
TEST(ManifestTest, AcquisitionCheckParsesRegionAndDefaultLimits) {
  Manifest m;
  Status s = ParseManifest(testing::WithAcquisitionCheck(ManifestJson()), &m);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_TRUE(m.acquisition_check.has_value());
  const AcquisitionCheck& check = *m.acquisition_check;
  ASSERT_EQ(check.regions.size(), 1u);
  EXPECT_DOUBLE_EQ(check.LimitsFor("R0").mean_min, 80.3);
  EXPECT_DOUBLE_EQ(check.LimitsFor("R0").mean_max, 230.7);
  EXPECT_DOUBLE_EQ(check.LimitsFor("R0").std_min, 13.0);
  EXPECT_DOUBLE_EQ(check.LimitsFor("R1").mean_min, 24.5);
  EXPECT_DOUBLE_EQ(check.LimitsFor("R1").mean_max, 238.3);
  EXPECT_DOUBLE_EQ(check.LimitsFor("R1").std_min, 4.77);
  // regions absent or null: the default for every region; the bounds themselves are legal limits
  for (const std::string regions : {"", R"("regions": null, )"}) {
    const std::string block = "{" + regions + R"("default": {"mean_min": 0, "mean_max": 255, "std_min": 0}})";
    s = ParseManifest(testing::WithAcquisitionCheck(ManifestJson(), block), &m);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_TRUE(m.acquisition_check.has_value());
    EXPECT_TRUE(m.acquisition_check->regions.empty());
    EXPECT_DOUBLE_EQ(m.acquisition_check->LimitsFor("R0").mean_max, 255.0);
  }
  s = ParseManifest(testing::WithAcquisitionCheck(
                        ManifestJson(), R"({"default": {"mean_min": 100, "mean_max": 100, "std_min": 200}})"),
                    &m);
  EXPECT_TRUE(s.ok()) << s.message();  // mean_min == mean_max is legal
}

// A malformed acquisition_check is a load error naming the field path (never a silently absent check).
TEST(ManifestTest, AcquisitionCheckErrorsNameTheField) {
  const std::string good = R"({"mean_min": 80.3, "mean_max": 230.7, "std_min": 13.0})";
  const auto with_region = [&](const std::string& r0) {
    return R"({"regions": {"R0": )" + r0 + R"(}, "default": )" + good + "}";
  };
  const auto with_default = [&](const std::string& def) {
    return R"({"regions": {"R0": )" + good + R"(}, "default": )" + def + "}";
  };
  const struct {
    std::string block, error;
  } cases[] = {
      {"7", R"(manifest: "acquisition_check" must be an object)"},
      {"[]", R"(manifest: "acquisition_check" must be an object)"},
      {R"({"regions": {"R0": )" + good + "}}",
       "manifest: acquisition_check.default is missing (the limits of regions not listed)"},
      {with_default("null"), "manifest: acquisition_check.default is missing (the limits of regions not listed)"},
      {R"({"regions": {"R0": 13}})",  // the missing default is named first, as by the Python server
       "manifest: acquisition_check.default is missing (the limits of regions not listed)"},
      {with_default("4.77"),
       "manifest: acquisition_check.default must be an object with mean_min, mean_max and std_min"},
      {R"({"regions": [], "default": )" + good + "}",
       R"(manifest: "acquisition_check.regions" must be an object {region: limits})"},
      {with_region("13"),
       "manifest: acquisition_check.regions.R0 must be an object with mean_min, mean_max and std_min"},
      {with_region(R"({"mean_min": "80", "mean_max": 230.7, "std_min": 13.0})"),
       "manifest: acquisition_check.regions.R0.mean_min must be a finite number"},
      {with_region(R"({"mean_min": 80, "mean_max": true, "std_min": 13.0})"),
       "manifest: acquisition_check.regions.R0.mean_max must be a finite number"},
      {with_default(R"({"mean_min": 80, "mean_max": 230.7})"),
       "manifest: acquisition_check.default.std_min must be a finite number"},
      {with_default(R"({"mean_min": null, "mean_max": 230.7, "std_min": 1})"),
       "manifest: acquisition_check.default.mean_min must be a finite number"},
      {with_region(R"({"mean_min": 200, "mean_max": 100, "std_min": 13.0})"),
       "manifest: acquisition_check.regions.R0 must have 0 <= mean_min <= mean_max <= 255 and std_min >= 0"},
      {with_region(R"({"mean_min": -0.5, "mean_max": 100, "std_min": 13.0})"),
       "manifest: acquisition_check.regions.R0 must have 0 <= mean_min <= mean_max <= 255 and std_min >= 0"},
      {with_region(R"({"mean_min": 10, "mean_max": 255.5, "std_min": 13.0})"),
       "manifest: acquisition_check.regions.R0 must have 0 <= mean_min <= mean_max <= 255 and std_min >= 0"},
      {with_default(R"({"mean_min": 10, "mean_max": 200, "std_min": -1})"),
       "manifest: acquisition_check.default must have 0 <= mean_min <= mean_max <= 255 and std_min >= 0"},
  };
  for (const auto& c : cases) {
    Manifest m;
    const Status s = ParseManifest(testing::WithAcquisitionCheck(ManifestJson(), c.block), &m);
    ASSERT_FALSE(s.ok()) << c.block;
    EXPECT_EQ(s.message(), c.error) << c.block;
  }
}

// signature.score_only names the score-only signature; absent or null means none (an older export); any
// other type is an error naming the field, not a silent fall-back.
TEST(ManifestTest, ScoreOnlySignatureIsOptionalAndMustBeAName) {
  const std::string full = R"("outputs": ["score", "heatmap", "reconstruction"])";
  auto with = [&](const std::string& field) {
    std::string json = ManifestJson();
    const size_t at = json.find(full);
    EXPECT_NE(at, std::string::npos);
    return json.insert(at + full.size(), ", \"score_only\": " + field);
  };
  Manifest m;
  ASSERT_TRUE(ParseManifest(ManifestJson(), &m).ok());
  EXPECT_EQ(m.score_only_signature, "");
  ASSERT_TRUE(ParseManifest(with(R"("score_only")"), &m).ok());
  EXPECT_EQ(m.score_only_signature, "score_only");
  Manifest none;
  ASSERT_TRUE(ParseManifest(with("null"), &none).ok());
  EXPECT_EQ(none.score_only_signature, "");
  Status s = ParseManifest(with("7"), &none);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("signature.score_only"), std::string::npos) << s.message();
}

TEST(ManifestTest, NullThresholdsIsALoadError) {
  Manifest m;
  Status s = ParseManifest(ManifestJson("vials", 1, 8, 8, 1, "reject", "null"), &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no thresholds"), std::string::npos) << s.message();
}

TEST(ManifestTest, EmptyThresholdsWithoutDefaultIsALoadError) {
  Manifest m;
  Status s = ParseManifest(ManifestJson("vials", 1, 8, 8, 1, "reject", R"({"regions": {}, "default": null})"), &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no region thresholds and no default"), std::string::npos) << s.message();
}

TEST(ManifestTest, DefaultThresholdAppliesToUnlistedRegions) {
  Manifest m;
  ASSERT_TRUE(ParseManifest(ManifestJson("m", 1, 8, 8, 1, "reject", R"({"regions": {"R0": 0.1}, "default": 0.7})"), &m).ok());
  EXPECT_FLOAT_EQ(*m.ThresholdFor("R0"), 0.1f);
  EXPECT_FLOAT_EQ(*m.ThresholdFor("R9"), 0.7f);
}

TEST(ManifestTest, UnknownRegionWithoutDefaultHasNoThreshold) {
  Manifest m;
  ASSERT_TRUE(ParseManifest(ManifestJson(), &m).ok());
  EXPECT_FALSE(m.ThresholdFor("R9").has_value());
}

TEST(ManifestTest, RejectsBadResizePolicy) {
  Manifest m;
  Status s = ParseManifest(ManifestJson("m", 1, 8, 8, 1, "nearest"), &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("preprocessing.resize"), std::string::npos) << s.message();
}

TEST(ManifestTest, RejectsNonNumericThreshold) {
  Manifest m;
  Status s = ParseManifest(ManifestJson("m", 1, 8, 8, 1, "reject", R"({"regions": {"R0": "high"}})"), &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("thresholds.regions.R0"), std::string::npos) << s.message();
}

TEST(ManifestTest, BlobRuntimeIsALoadErrorNamingThePythonServer) {
  std::string json = ManifestJson("blob", 1, 8, 8, 1, "reject");
  json.insert(1, R"("runtime": "python-blob", )");
  Manifest m;
  Status s = ParseManifest(json, &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("python-blob"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("tfad serve"), std::string::npos) << s.message();
  std::string savedmodel = ManifestJson("m", 1, 8, 8, 1, "reject");
  savedmodel.insert(1, R"("runtime": "savedmodel", )");
  EXPECT_TRUE(ParseManifest(savedmodel, &m).ok());
}

TEST(ManifestTest, RejectsWrongFormatAndBadJson) {
  Manifest m;
  EXPECT_FALSE(ParseManifest(R"({"format": "tfad-manifest/2"})", &m).ok());
  EXPECT_FALSE(ParseManifest("{not json", &m).ok());
  EXPECT_FALSE(ParseManifest("[]", &m).ok());
}

TEST(ManifestTest, RejectsBadInputShapeAndDtype) {
  Manifest m;
  EXPECT_FALSE(ParseManifest(ManifestJson("m", 1, 0, 8, 1), &m).ok());
  EXPECT_FALSE(ParseManifest(ManifestJson("m", 1, 8, 8, 2), &m).ok());
  std::string json = ManifestJson();
  json.replace(json.find("\"uint8\""), 7, "\"float32\"");
  Status s = ParseManifest(json, &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("input.dtype"), std::string::npos);
}

TEST(ManifestTest, RejectsNonPositiveVersion) {
  Manifest m;
  EXPECT_FALSE(ParseManifest(ManifestJson("m", 0), &m).ok());
}

TEST(ManifestTest, LoadManifestFileNamesTheFile) {
  Manifest m;
  Status s = LoadManifestFile("/nonexistent/dir", &m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/dir/tfad_manifest.json"), std::string::npos);
}

}  // namespace
}  // namespace tfad
