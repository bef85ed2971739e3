// The server's view of a loaded model and of the thing that loads models. The production implementation
// (tf_backend_client.h) calls into the dlopen()ed TensorFlow library; unit tests use fakes.
#ifndef TFAD_CC_INFERENCE_MODEL_H_
#define TFAD_CC_INFERENCE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cc/manifest.h"
#include "cc/status.h"

namespace tfad {

enum class RunCode { kOk, kError, kDeadlineExceeded };

class InferenceModel {
 public:
  virtual ~InferenceModel() = default;
  // Runs uint8 images [n, h, w, c]. Fills n scores and, when heatmaps != nullptr, n*h*w heatmap values.
  // timeout_ms > 0 bounds the run. Thread-safe.
  virtual RunCode Run(const uint8_t* images, int n, int h, int w, int c, int64_t timeout_ms,
                      std::vector<float>* scores, std::vector<float>* heatmaps, std::string* error) = 0;
};

class ModelLoader {
 public:
  virtual ~ModelLoader() = default;
  virtual Status Load(const std::string& version_dir, const Manifest& manifest,
                      std::shared_ptr<InferenceModel>* model) = 0;
};

}  // namespace tfad

#endif  // TFAD_CC_INFERENCE_MODEL_H_
