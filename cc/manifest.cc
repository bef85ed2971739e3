#include "cc/manifest.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace tfad {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

const Value* Field(const Struct& s, const std::string& key) {
  const auto it = s.fields().find(key);
  if (it == s.fields().end() || it->second.kind_case() == Value::kNullValue) return nullptr;
  return &it->second;
}

Status RequireString(const Struct& s, const std::string& key, const std::string& path, std::string* out) {
  const Value* v = Field(s, key);
  if (v == nullptr) return Status::Error("manifest: missing \"" + path + "\"");
  if (v->kind_case() != Value::kStringValue) return Status::Error("manifest: \"" + path + "\" must be a string");
  *out = v->string_value();
  return Status::Ok();
}

void OptionalString(const Struct& s, const std::string& key, std::string* out) {
  const Value* v = Field(s, key);
  if (v != nullptr && v->kind_case() == Value::kStringValue) *out = v->string_value();
}

Status RequirePositiveInt(const Struct& s, const std::string& key, const std::string& path, int64_t* out) {
  const Value* v = Field(s, key);
  if (v == nullptr) return Status::Error("manifest: missing \"" + path + "\"");
  if (v->kind_case() != Value::kNumberValue) return Status::Error("manifest: \"" + path + "\" must be a number");
  const double d = v->number_value();
  if (!(d >= 1) || d != std::floor(d) || d > 1e9) {
    return Status::Error("manifest: \"" + path + "\" must be a positive integer");
  }
  *out = static_cast<int64_t>(d);
  return Status::Ok();
}

Status RequireObject(const Struct& s, const std::string& key, const Struct** out) {
  const Value* v = Field(s, key);
  if (v == nullptr) return Status::Error("manifest: missing \"" + key + "\"");
  if (v->kind_case() != Value::kStructValue) return Status::Error("manifest: \"" + key + "\" must be an object");
  *out = &v->struct_value();
  return Status::Ok();
}

Status ParseThresholdValue(const Value& v, const std::string& path, float* out) {
  if (v.kind_case() != Value::kNumberValue || !std::isfinite(v.number_value())) {
    return Status::Error("manifest: \"" + path + "\" must be a finite number");
  }
  *out = static_cast<float>(v.number_value());
  return Status::Ok();
}

// One limits object of acquisition_check; `path` is "acquisition_check.regions.R0" or "acquisition_check.default".
Status ParseAcquisitionLimits(const Value& v, const std::string& path, AcquisitionLimits* out) {
  if (v.kind_case() != Value::kStructValue) {
    return Status::Error("manifest: " + path + " must be an object with mean_min, mean_max and std_min");
  }
  AcquisitionLimits limits;
  for (const auto& [key, value] : {std::pair<const char*, double*>{"mean_min", &limits.mean_min},
                                   {"mean_max", &limits.mean_max},
                                   {"std_min", &limits.std_min}}) {
    const Value* number = Field(v.struct_value(), key);
    if (number == nullptr || number->kind_case() != Value::kNumberValue || !std::isfinite(number->number_value())) {
      return Status::Error("manifest: " + path + "." + key + " must be a finite number");
    }
    *value = number->number_value();
  }
  if (!(0 <= limits.mean_min && limits.mean_min <= limits.mean_max && limits.mean_max <= 255 && limits.std_min >= 0)) {
    return Status::Error("manifest: " + path + " must have 0 <= mean_min <= mean_max <= 255 and std_min >= 0");
  }
  *out = limits;
  return Status::Ok();
}

// acquisition_check: {"regions": {region: limits} (optional), "default": limits}; "rule" and other keys ignored.
// The checks run in the order of tfad/scoring/acquisition.py, so both servers name the same first error.
Status ParseAcquisitionCheck(const Value& v, AcquisitionCheck* out) {
  if (v.kind_case() != Value::kStructValue) return Status::Error("manifest: \"acquisition_check\" must be an object");
  const Value* regions = Field(v.struct_value(), "regions");
  if (regions != nullptr && regions->kind_case() != Value::kStructValue) {
    return Status::Error("manifest: \"acquisition_check.regions\" must be an object {region: limits}");
  }
  const Value* def = Field(v.struct_value(), "default");
  if (def == nullptr) {
    return Status::Error("manifest: acquisition_check.default is missing (the limits of regions not listed)");
  }
  AcquisitionCheck check;
  Status s;
  if (regions != nullptr) {
    // in name order (a Struct keeps none): with several bad regions, the error names the same one on every load
    std::map<std::string, const Value*> sorted;
    for (const auto& kv : regions->struct_value().fields()) sorted.emplace(kv.first, &kv.second);
    for (const auto& [region, limits] : sorted) {
      if (!(s = ParseAcquisitionLimits(*limits, "acquisition_check.regions." + region, &check.regions[region])).ok()) {
        return s;
      }
    }
  }
  if (!(s = ParseAcquisitionLimits(*def, "acquisition_check.default", &check.default_limits)).ok()) return s;
  *out = std::move(check);
  return Status::Ok();
}

}  // namespace

const AcquisitionLimits& AcquisitionCheck::LimitsFor(const std::string& region) const {
  const auto it = regions.find(region);
  return it != regions.end() ? it->second : default_limits;
}

const char* ResizePolicyName(ResizePolicy policy) {
  return policy == ResizePolicy::kBilinear ? "bilinear" : "reject";
}

std::optional<float> Manifest::ThresholdFor(const std::string& region) const {
  const auto it = region_thresholds.find(region);
  if (it != region_thresholds.end()) return it->second;
  return default_threshold;
}

std::string Manifest::RegionList() const {
  std::string out;
  for (const auto& kv : region_thresholds) out += (out.empty() ? "" : ", ") + kv.first;
  return out.empty() ? "(none)" : out;
}

Status ParseManifest(const std::string& json, Manifest* out) {
  Struct root;
  const auto parse = google::protobuf::util::JsonStringToMessage(json, &root);
  if (!parse.ok()) return Status::Error("manifest: not a JSON object: " + std::string(parse.message()));
  Manifest m;
  Status s;
  if (!(s = RequireString(root, "format", "format", &m.format)).ok()) return s;
  if (m.format != "tfad-manifest/1") {
    return Status::Error("manifest: unsupported format \"" + m.format + "\" (this server reads tfad-manifest/1)");
  }
  if (!(s = RequireString(root, "name", "name", &m.name)).ok()) return s;
  if (!(s = RequirePositiveInt(root, "version", "version", &m.version)).ok()) return s;
  OptionalString(root, "model_family", &m.model_family);
  OptionalString(root, "preset", &m.preset);
  // Blob-analysis models (scikit-image, no SavedModel) are served by the Python server only.
  std::string runtime = "savedmodel";
  OptionalString(root, "runtime", &runtime);
  if (runtime != "savedmodel") {
    return Status::Error("manifest: runtime \"" + runtime +
                         "\" is not served by this server (it runs \"savedmodel\" models; blob-analysis "
                         "models run in the Python server, tfad serve)");
  }

  const Struct* input = nullptr;
  if (!(s = RequireObject(root, "input", &input)).ok()) return s;
  int64_t h = 0, w = 0, c = 0;
  if (!(s = RequirePositiveInt(*input, "height", "input.height", &h)).ok()) return s;
  if (!(s = RequirePositiveInt(*input, "width", "input.width", &w)).ok()) return s;
  if (!(s = RequirePositiveInt(*input, "channels", "input.channels", &c)).ok()) return s;
  if (h > 16384 || w > 16384 || (c != 1 && c != 3)) {
    return Status::Error("manifest: input must be at most 16384x16384 with 1 or 3 channels");
  }
  m.height = static_cast<int>(h);
  m.width = static_cast<int>(w);
  m.channels = static_cast<int>(c);
  std::string dtype = "uint8", layout = "NHWC";
  OptionalString(*input, "dtype", &dtype);
  OptionalString(*input, "layout", &layout);
  if (dtype != "uint8") return Status::Error("manifest: input.dtype is \"" + dtype + "\", must be \"uint8\"");
  if (layout != "NHWC") return Status::Error("manifest: input.layout is \"" + layout + "\", must be \"NHWC\"");

  // preprocessing.resize: absent means "reject" (the strict choice).
  if (const Value* pre = Field(root, "preprocessing"); pre != nullptr) {
    if (pre->kind_case() != Value::kStructValue) return Status::Error("manifest: \"preprocessing\" must be an object");
    std::string resize = "reject";
    OptionalString(pre->struct_value(), "resize", &resize);
    if (resize == "reject") {
      m.resize = ResizePolicy::kReject;
    } else if (resize == "bilinear") {
      m.resize = ResizePolicy::kBilinear;
    } else {
      return Status::Error("manifest: preprocessing.resize is \"" + resize + "\", must be \"reject\" or \"bilinear\"");
    }
    std::string blank = "inspect";
    OptionalString(pre->struct_value(), "blank_patches", &blank);
    if (blank != "reject" && blank != "inspect") {
      return Status::Error("manifest: preprocessing.blank_patches is \"" + blank + "\", must be \"reject\" or \"inspect\"");
    }
    m.reject_blank_patches = blank == "reject";
  }

  if (const Value* sig = Field(root, "signature"); sig != nullptr) {
    if (sig->kind_case() != Value::kStructValue) return Status::Error("manifest: \"signature\" must be an object");
    OptionalString(sig->struct_value(), "name", &m.signature_name);
    OptionalString(sig->struct_value(), "input", &m.signature_input);
    if (const Value* only = Field(sig->struct_value(), "score_only");
        only != nullptr && only->kind_case() != Value::kNullValue) {
      if (only->kind_case() != Value::kStringValue) {
        return Status::Error("manifest: \"signature.score_only\" must be a signature name (a string)");
      }
      m.score_only_signature = only->string_value();
    }
    if (const Value* outs = Field(sig->struct_value(), "outputs"); outs != nullptr) {
      if (outs->kind_case() != Value::kListValue) {
        return Status::Error("manifest: \"signature.outputs\" must be a list");
      }
      bool has_score = false, has_heatmap = false;
      for (const auto& o : outs->list_value().values()) {
        has_score |= o.string_value() == "score";
        has_heatmap |= o.string_value() == "heatmap";
      }
      if (!has_score || !has_heatmap) {
        return Status::Error("manifest: signature.outputs must include \"score\" and \"heatmap\"");
      }
    }
  }
  if (const Value* score = Field(root, "score"); score != nullptr && score->kind_case() == Value::kStructValue) {
    OptionalString(score->struct_value(), "name", &m.score_name);
    if (const Value* hi = Field(score->struct_value(), "higher_is_anomalous");
        hi != nullptr && hi->kind_case() == Value::kBoolValue && !hi->bool_value()) {
      return Status::Error("manifest: score.higher_is_anomalous is false; the contract requires higher = more anomalous");
    }
  }

  const Value* thresholds = Field(root, "thresholds");
  if (thresholds == nullptr) {
    return Status::Error("manifest: no thresholds (\"thresholds\" is null or missing): the model is not "
                         "calibrated and cannot be served");
  }
  if (thresholds->kind_case() != Value::kStructValue) return Status::Error("manifest: \"thresholds\" must be an object");
  const Struct& t = thresholds->struct_value();
  OptionalString(t, "policy", &m.threshold_policy);
  if (const Value* regions = Field(t, "regions"); regions != nullptr) {
    if (regions->kind_case() != Value::kStructValue) {
      return Status::Error("manifest: \"thresholds.regions\" must be an object {region: threshold}");
    }
    for (const auto& kv : regions->struct_value().fields()) {
      float value = 0;
      if (!(s = ParseThresholdValue(kv.second, "thresholds.regions." + kv.first, &value)).ok()) return s;
      m.region_thresholds[kv.first] = value;
    }
  }
  if (const Value* def = Field(t, "default"); def != nullptr) {
    float value = 0;
    if (!(s = ParseThresholdValue(*def, "thresholds.default", &value)).ok()) return s;
    m.default_threshold = value;
  }
  if (m.region_thresholds.empty() && !m.default_threshold) {
    return Status::Error("manifest: thresholds has no region thresholds and no default: nothing to decide with");
  }
  // acquisition_check: absent or null in manifests older than the block (no check)
  if (const Value* acq = Field(root, "acquisition_check"); acq != nullptr) {
    AcquisitionCheck check;
    if (!(s = ParseAcquisitionCheck(*acq, &check)).ok()) return s;
    m.acquisition_check = std::move(check);
  }
  *out = std::move(m);
  return Status::Ok();
}

Status LoadManifestFile(const std::string& version_dir, Manifest* out) {
  const std::string path = version_dir + "/tfad_manifest.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("cannot read " + path);
  std::ostringstream content;
  content << in.rdbuf();
  Status s = ParseManifest(content.str(), out);
  if (!s.ok()) return Status::Error(path + ": " + s.message());
  return s;
}

}  // namespace tfad
