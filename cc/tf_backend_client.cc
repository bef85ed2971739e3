#include "cc/tf_backend_client.h"

#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <limits>

#include "cc/tf_backend/tf_backend.h"

namespace tfad {

struct TfBackend::Api {
  int (*abi_version)();
  const char* (*tf_version)();
  TfadModel* (*load)(const char*, const char*, const char*, const char*, const char*, const char*, int, int, char*,
                     size_t);
  int (*run)(TfadModel*, const uint8_t*, int64_t, int64_t, int64_t, int64_t, int64_t, float*, float*, char*, size_t);
  void (*free_model)(TfadModel*);
};

namespace {

constexpr size_t kErrLen = 2048;

class TfModel : public InferenceModel {
 public:
  // Holds the Api (and so the library's symbols) alive as long as the model.
  TfModel(std::shared_ptr<TfBackend::Api> api, TfadModel* model) : api_(std::move(api)), model_(model) {}
  ~TfModel() override { api_->free_model(model_); }

  RunCode Run(const uint8_t* images, int n, int h, int w, int c, int64_t timeout_ms, std::vector<float>* scores,
              std::vector<float>* heatmaps, std::string* error) override {
    // NaN until the backend writes them: a score it left unwritten is an incomplete inspection, not an accept
    scores->assign(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
    if (heatmaps != nullptr) heatmaps->assign(static_cast<size_t>(n) * h * w, 0.0f);
    char err[kErrLen] = {0};
    const int code = api_->run(model_, images, n, h, w, c, timeout_ms, scores->data(),
                               heatmaps != nullptr ? heatmaps->data() : nullptr, err, kErrLen);
    if (code == TFAD_RUN_OK) return RunCode::kOk;
    *error = err;
    return code == TFAD_RUN_DEADLINE_EXCEEDED ? RunCode::kDeadlineExceeded : RunCode::kError;
  }

 private:
  std::shared_ptr<TfBackend::Api> api_;
  TfadModel* model_;
};

template <typename Fn>
bool Resolve(void* handle, const char* name, Fn* fn) {
  *fn = reinterpret_cast<Fn>(::dlsym(handle, name));
  return *fn != nullptr;
}

}  // namespace

std::string DefaultBackendPath() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "libtfad_tf_backend.so";
  std::string exe(buf, static_cast<size_t>(n));
  return exe.substr(0, exe.rfind('/') + 1) + "libtfad_tf_backend.so";
}

Status TfBackend::Open(const std::string& library_path, const TfBackendOptions& options,
                       std::unique_ptr<TfBackend>* out) {
  void* handle = ::dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (handle == nullptr) {
    const char* e = ::dlerror();
    return Status::Error("cannot load TensorFlow back end " + library_path + ": " + (e ? e : "unknown error"));
  }
  auto api = std::make_shared<Api>();
  if (!Resolve(handle, "tfad_backend_abi_version", &api->abi_version) ||
      !Resolve(handle, "tfad_backend_tf_version", &api->tf_version) || !Resolve(handle, "tfad_model_load", &api->load) ||
      !Resolve(handle, "tfad_model_run", &api->run) || !Resolve(handle, "tfad_model_free", &api->free_model)) {
    ::dlclose(handle);
    return Status::Error(library_path + " is not a tfad TensorFlow back end (missing symbols)");
  }
  if (api->abi_version() != TFAD_BACKEND_ABI_VERSION) {
    const int found = api->abi_version();
    ::dlclose(handle);
    return Status::Error(library_path + " has back-end ABI " + std::to_string(found) + ", this server needs " +
                         std::to_string(TFAD_BACKEND_ABI_VERSION));
  }
  std::unique_ptr<TfBackend> backend(new TfBackend());
  backend->handle_ = handle;
  backend->api_ = std::move(api);
  backend->options_ = options;
  *out = std::move(backend);
  return Status::Ok();
}

// The library stays loaded for the life of the process: TensorFlow does not support being unloaded.
TfBackend::~TfBackend() = default;

std::string TfBackend::tf_version() const { return api_->tf_version(); }

Status TfBackend::Load(const std::string& version_dir, const Manifest& manifest,
                       std::shared_ptr<InferenceModel>* model) {
  char err[kErrLen] = {0};
  TfadModel* raw = api_->load(version_dir.c_str(), manifest.signature_name.c_str(), manifest.signature_input.c_str(),
                              manifest.score_output.c_str(), manifest.heatmap_output.c_str(),
                              manifest.score_only_signature.c_str(),
                              options_.intra_op_threads, options_.inter_op_threads, err, kErrLen);
  if (raw == nullptr) return Status::Error(err);
  *model = std::make_shared<TfModel>(api_, raw);
  return Status::Ok();
}

}  // namespace tfad
