// Fakes of InferenceModel / ModelLoader for unit tests of the model manager and the service.
#ifndef TFAD_CC_TESTS_FAKE_MODEL_H_
#define TFAD_CC_TESTS_FAKE_MODEL_H_

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "cc/inference_model.h"

namespace tfad::testing {

// What FakeModel::Run throws (as the TensorFlow client may: std::bad_alloc from a tensor allocation).
enum class FakeThrow { kNone, kBadAlloc, kRuntimeError, kNonStd };

// score = mean pixel / 255 of each image; behaviour switches for fail-safe tests.
class FakeModel : public InferenceModel {
 public:
  std::atomic<int> sleep_ms{0};
  std::atomic<bool> fail{false};
  std::atomic<bool> nan_scores{false};
  std::atomic<FakeThrow> throws{FakeThrow::kNone};
  std::atomic<int> runs{0};
  std::atomic<float> score_offset{0.0f};  // added to every score: tells models (versions) apart
  std::atomic<float> score_only_offset{0.0f};  // added to the scores of runs without heatmaps
  std::atomic<int> runs_without_heatmaps{0};
  std::atomic<bool> hold{false};          // while true, Run waits (a request kept in flight)
  std::atomic<int> held{0};               // runs that have waited on `hold`
  std::atomic<int> short_heatmaps{0};     // heatmap values left out of a run's output (a misbehaving model)

  RunCode Run(const uint8_t* images, int n, int h, int w, int c, int64_t /*timeout_ms*/, std::vector<float>* scores,
              std::vector<float>* heatmaps, std::string* error) override {
    ++runs;
    if (hold) {
      ++held;
      while (hold) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms.load()));
    switch (throws.load()) {
      case FakeThrow::kNone: break;
      case FakeThrow::kBadAlloc: throw std::bad_alloc();
      case FakeThrow::kRuntimeError: throw std::runtime_error("fake runtime error");
      case FakeThrow::kNonStd: throw 42;  // not a std::exception
    }
    if (fail) {
      *error = "fake failure";
      return RunCode::kError;
    }
    if (heatmaps == nullptr) ++runs_without_heatmaps;
    const float offset = score_offset + (heatmaps == nullptr ? score_only_offset.load() : 0.0f);
    const size_t per = static_cast<size_t>(h) * w * c;
    scores->assign(static_cast<size_t>(n), 0.0f);
    for (int i = 0; i < n; ++i) {
      double sum = 0;
      for (size_t k = 0; k < per; ++k) sum += images[static_cast<size_t>(i) * per + k];
      (*scores)[static_cast<size_t>(i)] = nan_scores ? std::nanf("") : static_cast<float>(sum / per / 255.0) + offset;
    }
    if (heatmaps != nullptr) heatmaps->assign(static_cast<size_t>(n) * h * w - short_heatmaps, 0.5f);
    return RunCode::kOk;
  }
};

// Loads a version unless its directory contains a file named "broken"; shares one FakeModel.
class FakeLoader : public ModelLoader {
 public:
  std::shared_ptr<FakeModel> model = std::make_shared<FakeModel>();
  std::atomic<int> loads{0};

  std::atomic<FakeThrow> throws{FakeThrow::kNone};  // what Load throws
  // When true every load gets its own FakeModel, with score_offset = version / 100 (kept in `loaded`).
  bool model_per_version = false;
  std::map<int64_t, std::shared_ptr<FakeModel>> loaded;

  Status Load(const std::string& version_dir, const Manifest& manifest, std::shared_ptr<InferenceModel>* out) override {
    ++loads;
    switch (throws.load()) {
      case FakeThrow::kNone: break;
      case FakeThrow::kBadAlloc: throw std::bad_alloc();
      case FakeThrow::kRuntimeError: throw std::runtime_error("fake load exception");
      case FakeThrow::kNonStd: throw 42;
    }
    if (std::ifstream(version_dir + "/broken").good()) return Status::Error("SavedModel load failed: fake broken version");
    if (model_per_version) {
      auto fresh = std::make_shared<FakeModel>();
      fresh->score_offset = static_cast<float>(manifest.version) / 100.0f;
      loaded[manifest.version] = fresh;
      *out = fresh;
      return Status::Ok();
    }
    *out = model;
    return Status::Ok();
  }
};

}  // namespace tfad::testing

#endif  // TFAD_CC_TESTS_FAKE_MODEL_H_
