// Loads libtfad_tf_backend.so with dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND) — both flags keep
// TensorFlow's bundled protobuf apart from the server's — and adapts its C ABI to ModelLoader.
#ifndef TFAD_CC_TF_BACKEND_CLIENT_H_
#define TFAD_CC_TF_BACKEND_CLIENT_H_

#include <memory>
#include <string>

#include "cc/inference_model.h"
#include "cc/status.h"

namespace tfad {

struct TfBackendOptions {
  int intra_op_threads = 0;  // 0 = TensorFlow's default (all cores)
  int inter_op_threads = 0;
};

class TfBackend : public ModelLoader {
 public:
  // Opens the library at `library_path`; fails with a message naming the path and dlerror().
  static Status Open(const std::string& library_path, const TfBackendOptions& options,
                     std::unique_ptr<TfBackend>* out);
  ~TfBackend() override;

  std::string tf_version() const;
  Status Load(const std::string& version_dir, const Manifest& manifest,
              std::shared_ptr<InferenceModel>* model) override;

  struct Api;  // resolved function pointers

 private:
  TfBackend() = default;
  void* handle_ = nullptr;
  std::shared_ptr<Api> api_;
  TfBackendOptions options_;
};

// Default library location: libtfad_tf_backend.so in the directory of the running executable.
std::string DefaultBackendPath();

}  // namespace tfad

#endif  // TFAD_CC_TF_BACKEND_CLIENT_H_
