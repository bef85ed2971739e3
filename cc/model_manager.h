// Model lifecycle (in the manner of TensorFlow Serving's manager): each model has a base path with numbered
// version directories; the highest version that loads and warms up serves; new versions are picked up
// by polling and swapped in atomically; a version that fails is reported and the previous one keeps
// serving. Requests hold a shared_ptr to the Servable they started with, so a swap never pulls a model
// out from under a running inference.
#ifndef TFAD_CC_MODEL_MANAGER_H_
#define TFAD_CC_MODEL_MANAGER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cc/inference_model.h"
#include "cc/latency_stats.h"
#include "cc/manifest.h"
#include "cc/status.h"

namespace tfad {

// One loaded, warmed-up model version. Immutable.
struct Servable {
  std::string name;
  int64_t version = 0;
  std::string path;
  Manifest manifest;
  std::shared_ptr<InferenceModel> model;
};

enum class VersionState { kLoading, kAvailable, kRetired, kFailed };
const char* VersionStateName(VersionState state);

struct VersionRecord {
  int64_t version = 0;
  VersionState state = VersionState::kLoading;
  std::string error;
  double state_since_unix_s = 0;
  double load_ms = 0;
  std::string fingerprint;
};

struct LoadOptions {
  int warmup_batch = 60;  // images in the warm-up run (the first run of a model is slow: graph optimisation)
};

class ModelSlot {
 public:
  ModelSlot(std::string name, std::string base_path, ModelLoader* loader, LoadOptions options);

  const std::string& name() const { return name_; }
  const std::string& base_path() const { return base_path_; }
  // The serving version, or nullptr when none is loaded.
  std::shared_ptr<const Servable> Current() const;
  // One scan-and-load cycle (see the header comment). Safe to call from any thread; cycles serialize.
  void Poll();
  // Every version seen, newest first.
  std::vector<VersionRecord> Versions() const;
  ModelStatsRecorder& stats() { return stats_; }

 private:
  Status TryLoad(int64_t version, const std::string& path, std::shared_ptr<const Servable>* out, double* load_ms);
  Status TryLoadNoThrow(int64_t version, const std::string& path, std::shared_ptr<const Servable>* out,
                        double* load_ms) noexcept;
  void SetRecord(int64_t version, VersionState state, const std::string& error, double load_ms,
                 const std::string& fingerprint);

  const std::string name_;
  const std::string base_path_;
  ModelLoader* const loader_;
  const LoadOptions options_;
  std::mutex poll_mu_;  // serializes Poll()
  mutable std::mutex mu_;
  std::shared_ptr<const Servable> current_;
  std::map<int64_t, VersionRecord> records_;
  std::string last_scan_error_;
  ModelStatsRecorder stats_;
};

class ModelManager {
 public:
  // `names` empty = every model directory under models_root.
  static Status Create(const std::string& models_root, const std::vector<std::string>& names, ModelLoader* loader,
                       LoadOptions options, std::unique_ptr<ModelManager>* out);
  ~ModelManager();

  // Polls every model once (blocking); used at start-up.
  void PollAll();
  // Starts a background thread polling every interval_ms (0 = never).
  // Polls every `interval_ms` on a thread whose nice value is raised by `thread_nice` (loads run
  // TensorFlow, and TensorFlow's pools are created from the loading thread: thread_priority.h).
  void StartPolling(int interval_ms, int thread_nice = 0);
  void StopPolling();

  // nullptr when no model has that name; "" = the default (first) model.
  ModelSlot* Find(const std::string& name) const;
  std::vector<ModelSlot*> Slots() const;
  std::string NameList() const;
  // True when every model has a serving version.
  bool AllServing() const;

 private:
  ModelManager() = default;
  std::vector<std::unique_ptr<ModelSlot>> slots_;
  std::thread poller_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
};

}  // namespace tfad

#endif  // TFAD_CC_MODEL_MANAGER_H_
