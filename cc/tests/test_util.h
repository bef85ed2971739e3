// Helpers shared by the C++ unit tests: temp directories, manifests, requests.
#ifndef TFAD_CC_TESTS_TEST_UTIL_H_
#define TFAD_CC_TESTS_TEST_UTIL_H_

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "tfad/inspection/v1/inspection.pb.h"

namespace tfad::testing {

inline std::string TempDir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(base ? base : "/tmp") + "/" + name;
  std::string cmd = "rm -rf '" + dir + "' && mkdir -p '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) return "";
  return dir;
}

inline void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

inline void MakeDir(const std::string& path) { ::mkdir(path.c_str(), 0755); }

// A valid manifest; `thresholds_json` replaces the thresholds object.
inline std::string ManifestJson(const std::string& name = "vials", int version = 1, int h = 8, int w = 8, int c = 1,
                                const std::string& resize = "reject",
                                const std::string& thresholds_json =
                                    R"({"policy": "max-accuracy", "regions": {"R0": 0.5, "R1": 0.25}, "default": null})",
                                const std::string& blank_patches = "") {  // "": the field absent
  return R"({"format": "tfad-manifest/1", "name": ")" + name + R"(", "version": )" + std::to_string(version) +
         R"(, "model_family": "fake", "input": {"height": )" + std::to_string(h) + R"(, "width": )" + std::to_string(w) +
         R"(, "channels": )" + std::to_string(c) + R"(, "dtype": "uint8", "layout": "NHWC"},
          "preprocessing": {"scale": "1/255", "resize": ")" + resize + R"(")" +
         (blank_patches.empty() ? std::string() : R"(, "blank_patches": ")" + blank_patches + R"(")") + R"(},
          "signature": {"name": "serving_default", "input": "images", "outputs": ["score", "heatmap", "reconstruction"]},
          "score": {"name": "1-ssim", "higher_is_anomalous": true},
          "thresholds": )" + thresholds_json + "}";
}

// An acquisition_check block: R0's own limits, the default for every other region (R1).
constexpr char kAcquisitionCheckJson[] = R"({"rule": "ignored by the servers",
    "regions": {"R0": {"mean_min": 80.3, "mean_max": 230.7, "std_min": 13.0}},
    "default": {"mean_min": 24.5, "mean_max": 238.3, "std_min": 4.77}})";

// `manifest_json` with a top-level "acquisition_check": `block` (any JSON value).
inline std::string WithAcquisitionCheck(std::string manifest_json, const std::string& block = kAcquisitionCheckJson) {
  return manifest_json.insert(1, "\"acquisition_check\": " + block + ", ");
}

inline tfad::inspection::v1::Patch* AddRawPatch(tfad::inspection::v1::InspectRequest* request, const std::string& region,
                                                 int w, int h, int c, uint8_t value = 100, uint32_t vial = 0,
                                                 uint32_t frame = 0) {
  auto* p = request->add_patches();
  p->set_region(region);
  p->set_frame(frame);
  p->set_vial(vial);
  p->set_encoding(tfad::inspection::v1::IMAGE_ENCODING_RAW_UINT8);
  p->set_width(static_cast<uint32_t>(w));
  p->set_height(static_cast<uint32_t>(h));
  p->set_channels(static_cast<uint32_t>(c));
  p->set_data(std::string(static_cast<size_t>(w) * h * c, static_cast<char>(value)));
  return p;
}

}  // namespace tfad::testing

#endif  // TFAD_CC_TESTS_TEST_UTIL_H_
