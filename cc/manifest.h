// tfad_manifest.json (docs/architecture.md, "The SavedModel serving contract"): parsing and validation.
#ifndef TFAD_CC_MANIFEST_H_
#define TFAD_CC_MANIFEST_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cc/status.h"

namespace tfad {

enum class ResizePolicy { kReject, kBilinear };

const char* ResizePolicyName(ResizePolicy policy);

// The range of a region's good calibration images (tfad calibrate, widened): a patch whose mean gray (0-255) is
// outside [mean_min, mean_max] or whose pixel standard deviation is below std_min was not acquired as they were.
struct AcquisitionLimits {
  double mean_min = 0;
  double mean_max = 255;
  double std_min = 0;
};

// acquisition_check: the limits of each listed region and of every other region (default).
struct AcquisitionCheck {
  std::map<std::string, AcquisitionLimits> regions;
  AcquisitionLimits default_limits;

  // The limits for `region`: its own, else the default.
  const AcquisitionLimits& LimitsFor(const std::string& region) const;
};

struct Manifest {
  std::string format;  // "tfad-manifest/1"
  std::string name;
  int64_t version = 0;
  std::string model_family;
  std::string preset;
  int height = 0;
  int width = 0;
  int channels = 0;
  ResizePolicy resize = ResizePolicy::kReject;
  // preprocessing.blank_patches "reject": a product with a patch whose pixels all have one value is
  // REJECT_INCOMPLETE / BLANK_PATCH, not scored ("inspect", or absent in manifests older than the field: scored).
  bool reject_blank_patches = false;
  // acquisition_check: a product with a patch outside its region's limits is REJECT_INCOMPLETE /
  // ACQUISITION_CHECK, not scored (a dark, saturated or flat frame that is not uniform enough to be blank).
  // nullopt when the block is absent or null (older manifests): no check.
  std::optional<AcquisitionCheck> acquisition_check;
  std::string signature_name = "serving_default";
  std::string signature_input = "images";
  std::string score_output = "score";
  std::string heatmap_output = "heatmap";
  // The signature returning the score alone, run for requests without heatmaps ("": none, older exports).
  std::string score_only_signature;
  std::string score_name;
  std::string threshold_policy;
  std::map<std::string, float> region_thresholds;
  std::optional<float> default_threshold;

  // The threshold for `region`: its own, else the default; nullopt when neither exists.
  std::optional<float> ThresholdFor(const std::string& region) const;
  // "R0, R1" (for error messages).
  std::string RegionList() const;
};

// Parses and validates manifest JSON. Every violation of the contract is an error naming the field,
// including a manifest without thresholds (an uncalibrated model is not servable).
Status ParseManifest(const std::string& json, Manifest* out);

// Reads `<version_dir>/tfad_manifest.json` and parses it.
Status LoadManifestFile(const std::string& version_dir, Manifest* out);

}  // namespace tfad

#endif  // TFAD_CC_MANIFEST_H_
