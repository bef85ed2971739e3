#include "cc/model_manager.h"

#include <chrono>
#include <cmath>
#include <exception>
#include <new>
#include <random>

#include "cc/structured_log.h"
#include "cc/thread_priority.h"
#include "cc/version_scan.h"

namespace tfad {
namespace {

// Stated tolerance between a model's full run and its run without heatmaps (tfad/rundir.py SCORE_PATHS_*).
constexpr double kScorePathsAtol = 1e-5, kScorePathsRtol = 1e-4;

double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

const char* VersionStateName(VersionState state) {
  switch (state) {
    case VersionState::kLoading: return "loading";
    case VersionState::kAvailable: return "available";
    case VersionState::kRetired: return "retired";
    case VersionState::kFailed: return "failed";
  }
  return "unknown";
}

ModelSlot::ModelSlot(std::string name, std::string base_path, ModelLoader* loader, LoadOptions options)
    : name_(std::move(name)), base_path_(std::move(base_path)), loader_(loader), options_(options) {}

std::shared_ptr<const Servable> ModelSlot::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::vector<VersionRecord> ModelSlot::Versions() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<VersionRecord> out;
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) out.push_back(it->second);
  return out;
}

void ModelSlot::SetRecord(int64_t version, VersionState state, const std::string& error, double load_ms,
                          const std::string& fingerprint) {
  std::lock_guard<std::mutex> lock(mu_);
  VersionRecord& r = records_[version];
  r.version = version;
  r.state = state;
  r.error = error;
  r.state_since_unix_s = NowUnix();
  if (load_ms > 0) r.load_ms = load_ms;
  if (!fingerprint.empty()) r.fingerprint = fingerprint;
}

Status ModelSlot::TryLoad(int64_t version, const std::string& path, std::shared_ptr<const Servable>* out,
                          double* load_ms) {
  const auto start = std::chrono::steady_clock::now();
  auto servable = std::make_shared<Servable>();
  servable->name = name_;
  servable->version = version;
  servable->path = path;
  Status s = LoadManifestFile(path, &servable->manifest);
  if (!s.ok()) return s;
  const Manifest& m = servable->manifest;
  if (m.version != version) {
    return Status::Error("manifest says version " + std::to_string(m.version) + " but the directory is version " +
                         std::to_string(version));
  }
  if (m.name != name_) {
    return Status::Error("manifest says model \"" + m.name + "\" but it is in the directory of model \"" + name_ + "\"");
  }
  s = loader_->Load(path, m, &servable->model);
  if (!s.ok()) return s;

  // Warm-up: a full-size batch of deterministic noise; the outputs must honour the contract.
  const int n = std::max(1, options_.warmup_batch);
  std::vector<uint8_t> images(static_cast<size_t>(n) * m.height * m.width * m.channels);
  std::mt19937 rng(12345);
  for (auto& px : images) px = static_cast<uint8_t>(rng() & 0xff);
  std::vector<float> scores, heatmaps;
  std::string error;
  const RunCode code =
      servable->model->Run(images.data(), n, m.height, m.width, m.channels, 0, &scores, &heatmaps, &error);
  if (code != RunCode::kOk) return Status::Error("warm-up run failed: " + error);
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) return Status::Error("warm-up run gave a non-finite score for image " + std::to_string(i));
  }
  // The run without heatmaps (the score-only signature, when the model has one) is warmed up too, so that
  // a request without heatmaps does not pay for its first run, and must decide as the full run: a heatmap
  // mode never changes a verdict. Tolerance as tfad.serving.models.scores_agree: one function traced twice.
  std::vector<float> scores_only;
  const RunCode only_code =
      servable->model->Run(images.data(), n, m.height, m.width, m.channels, 0, &scores_only, nullptr, &error);
  if (only_code != RunCode::kOk) return Status::Error("warm-up run without heatmaps failed: " + error);
  if (scores_only.size() != scores.size()) return Status::Error("warm-up run without heatmaps gave another count");
  for (size_t i = 0; i < scores.size(); ++i) {
    const double full = scores[i], only = scores_only[i];
    if (!(std::abs(full - only) <= kScorePathsAtol + kScorePathsRtol * std::abs(full))) {
      return Status::Error("the score-only signature's warm-up score differs from the full signature's for image " +
                           std::to_string(i) + " (" + std::to_string(only) + " vs " + std::to_string(full) + ")");
    }
  }
  *load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  *out = std::move(servable);
  return Status::Ok();
}

Status ModelSlot::TryLoadNoThrow(int64_t version, const std::string& path, std::shared_ptr<const Servable>* out,
                                 double* load_ms) noexcept {
  // An exception from the loader or the warm-up run (std::bad_alloc from the TensorFlow client, anything
  // else) is this version's load error: the previous version keeps serving and the poller lives on.
  try {
    return TryLoad(version, path, out, load_ms);
  } catch (const std::bad_alloc&) {
    return Status::Error("loading threw an exception: std::bad_alloc (out of memory)");
  } catch (const std::exception& e) {
    return Status::Error(std::string("loading threw an exception: ") + e.what());
  } catch (...) {
    return Status::Error("loading threw a non-standard exception");
  }
}

void ModelSlot::Poll() {
  std::lock_guard<std::mutex> poll_lock(poll_mu_);
  std::vector<VersionDir> versions;
  Status s = ScanVersions(base_path_, &versions);
  if (!s.ok()) {
    if (s.message() != last_scan_error_) LogEvent(LogLevel::kWarning, "model_scan_failed", {{"model", name_}, {"error", s.message()}});
    last_scan_error_ = s.message();
    return;
  }
  last_scan_error_.clear();
  const std::shared_ptr<const Servable> current = Current();
  for (const VersionDir& v : versions) {
    // The best loadable version is the one already serving: nothing to do.
    if (current != nullptr && v.version == current->version) break;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto it = records_.find(v.version);
      if (it != records_.end() && it->second.state == VersionState::kFailed && it->second.fingerprint == v.fingerprint) {
        continue;  // failed before and unchanged since
      }
    }
    SetRecord(v.version, VersionState::kLoading, "", 0, v.fingerprint);
    LogEvent(LogLevel::kInfo, "model_loading", {{"model", name_}, {"version", std::to_string(v.version)}, {"path", v.path}});
    std::shared_ptr<const Servable> loaded;
    double load_ms = 0;
    s = TryLoadNoThrow(v.version, v.path, &loaded, &load_ms);
    if (!s.ok()) {
      SetRecord(v.version, VersionState::kFailed, s.message(), 0, v.fingerprint);
      LogEvent(LogLevel::kError, "model_load_failed",
               {{"model", name_},
                {"version", std::to_string(v.version)},
                {"error", s.message()},
                {"serving_version", current ? std::to_string(current->version) : "none"}});
      continue;  // try the next lower version (still better than nothing / a rollback target)
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = loaded;
      if (current != nullptr) {
        VersionRecord& old = records_[current->version];
        old.state = VersionState::kRetired;
        old.state_since_unix_s = NowUnix();
      }
    }
    SetRecord(v.version, VersionState::kAvailable, "", load_ms, v.fingerprint);
    LogEvent(LogLevel::kInfo, "model_available",
             {{"model", name_},
              {"version", std::to_string(v.version)},
              {"load_ms", FormatMs(load_ms)},
              {"replaced_version", current ? std::to_string(current->version) : "none"},
              {"input", std::to_string(loaded->manifest.width) + "x" + std::to_string(loaded->manifest.height) + "x" +
                            std::to_string(loaded->manifest.channels)},
              {"resize", ResizePolicyName(loaded->manifest.resize)}});
    break;
  }
}

Status ModelManager::Create(const std::string& models_root, const std::vector<std::string>& names, ModelLoader* loader,
                            LoadOptions options, std::unique_ptr<ModelManager>* out) {
  std::vector<std::string> model_names = names;
  if (model_names.empty()) {
    Status s = ScanModelNames(models_root, &model_names);
    if (!s.ok()) return s;
    if (model_names.empty()) {
      return Status::Error("no models under " + models_root + " (expected <name>/<version>/ directories)");
    }
  }
  std::unique_ptr<ModelManager> manager(new ModelManager());
  for (const std::string& name : model_names) {
    if (name.empty() || name.find('/') != std::string::npos) return Status::Error("invalid model name \"" + name + "\"");
    manager->slots_.push_back(std::make_unique<ModelSlot>(name, models_root + "/" + name, loader, options));
  }
  *out = std::move(manager);
  return Status::Ok();
}

ModelManager::~ModelManager() { StopPolling(); }

void ModelManager::PollAll() {
  for (auto& slot : slots_) {
    // The last line of defence of the poller: a throw here (e.g. out of memory while scanning) must not
    // end the server; the slot keeps its serving version and the next poll tries again.
    try {
      slot->Poll();
    } catch (const std::exception& e) {
      LogEvent(LogLevel::kError, "model_poll_exception", {{"model", slot->name()}, {"error", e.what()}});
    } catch (...) {
      LogEvent(LogLevel::kError, "model_poll_exception", {{"model", slot->name()}, {"error", "a non-standard exception"}});
    }
  }
}

void ModelManager::StartPolling(int interval_ms, int thread_nice) {
  if (interval_ms <= 0 || poller_.joinable()) return;
  poller_ = std::thread([this, interval_ms, thread_nice] {
    const Status priority = LowerCurrentThreadPriority(thread_nice);
    if (!priority.ok()) {
      LogEvent(LogLevel::kWarning, "thread_priority_unchanged", {{"thread", "model_poller"}, {"error", priority.message()}});
    }
    std::unique_lock<std::mutex> lock(stop_mu_);
    while (!stop_cv_.wait_for(lock, std::chrono::milliseconds(interval_ms), [this] { return stop_; })) {
      lock.unlock();
      PollAll();
      lock.lock();
    }
  });
}

void ModelManager::StopPolling() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
}

ModelSlot* ModelManager::Find(const std::string& name) const {
  if (name.empty()) return slots_.empty() ? nullptr : slots_.front().get();
  for (const auto& slot : slots_) {
    if (slot->name() == name) return slot.get();
  }
  return nullptr;
}

std::vector<ModelSlot*> ModelManager::Slots() const {
  std::vector<ModelSlot*> out;
  for (const auto& slot : slots_) out.push_back(slot.get());
  return out;
}

std::string ModelManager::NameList() const {
  std::string out;
  for (const auto& slot : slots_) out += (out.empty() ? "" : ", ") + slot->name();
  return out;
}

bool ModelManager::AllServing() const {
  for (const auto& slot : slots_) {
    if (slot->Current() == nullptr) return false;
  }
  return !slots_.empty();
}

}  // namespace tfad
