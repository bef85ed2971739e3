// TensorFlow C++ implementation of the C ABI in tf_backend.h. Only this translation unit includes
// TensorFlow headers; it is linked into libtfad_tf_backend.so and never into the gRPC server.
#include "cc/tf_backend/tf_backend.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/public/session.h"
#include "tensorflow/c/c_api.h"

struct TfadModel {
  tensorflow::SavedModelBundle bundle;
  std::string input_tensor;    // e.g. "serving_default_images:0"
  std::string score_tensor;    // e.g. "StatefulPartitionedCall:0"
  std::string heatmap_tensor;  // e.g. "StatefulPartitionedCall:1"
};

namespace {

void WriteError(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) return;
  const size_t n = std::min(message.size(), err_len - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

std::string ShapeString(const tensorflow::Tensor& t) { return t.shape().DebugString(); }

}  // namespace

extern "C" {

int tfad_backend_abi_version(void) { return TFAD_BACKEND_ABI_VERSION; }

const char* tfad_backend_tf_version(void) { return TF_Version(); }

TfadModel* tfad_model_load(const char* export_dir, const char* signature_name, const char* input_key,
                           const char* score_key, const char* heatmap_key, int intra_op_threads,
                           int inter_op_threads, char* err, size_t err_len) {
  try {
    auto model = std::make_unique<TfadModel>();
    tensorflow::SessionOptions session_options;
    if (intra_op_threads > 0) session_options.config.set_intra_op_parallelism_threads(intra_op_threads);
    if (inter_op_threads > 0) session_options.config.set_inter_op_parallelism_threads(inter_op_threads);
    tensorflow::RunOptions run_options;
    // "serve" = tensorflow::kSavedModelTagServe (tag_constants.h is not shipped in the wheel).
    const auto status = tensorflow::LoadSavedModel(session_options, run_options, export_dir, {"serve"},
                                                   &model->bundle);
    if (!status.ok()) {
      WriteError(err, err_len, std::string("SavedModel load failed: ") + std::string(status.message()));
      return nullptr;
    }
    const auto& signatures = model->bundle.meta_graph_def.signature_def();
    const auto sig_it = signatures.find(signature_name);
    if (sig_it == signatures.end()) {
      std::string names;
      for (const auto& kv : signatures) names += (names.empty() ? "" : ", ") + kv.first;
      WriteError(err, err_len, std::string("signature '") + signature_name + "' not found (has: " + names + ")");
      return nullptr;
    }
    const auto& sig = sig_it->second;
    const auto in_it = sig.inputs().find(input_key);
    if (in_it == sig.inputs().end()) {
      WriteError(err, err_len, std::string("signature input '") + input_key + "' not found");
      return nullptr;
    }
    if (in_it->second.dtype() != tensorflow::DT_UINT8) {
      WriteError(err, err_len, std::string("signature input '") + input_key + "' is " +
                                   tensorflow::DataTypeString(in_it->second.dtype()) + ", expected uint8");
      return nullptr;
    }
    model->input_tensor = in_it->second.name();
    for (const auto& [key, target] : {std::pair<const char*, std::string*>{score_key, &model->score_tensor},
                                      std::pair<const char*, std::string*>{heatmap_key, &model->heatmap_tensor}}) {
      const auto out_it = sig.outputs().find(key);
      if (out_it == sig.outputs().end()) {
        WriteError(err, err_len, std::string("signature output '") + key + "' not found");
        return nullptr;
      }
      if (out_it->second.dtype() != tensorflow::DT_FLOAT) {
        WriteError(err, err_len, std::string("signature output '") + key + "' is not float32");
        return nullptr;
      }
      *target = out_it->second.name();
    }
    return model.release();
  } catch (const std::exception& e) {
    WriteError(err, err_len, std::string("exception while loading: ") + e.what());
  } catch (...) {
    WriteError(err, err_len, "unknown exception while loading");
  }
  return nullptr;
}

int tfad_model_run(TfadModel* model, const uint8_t* images, int64_t n, int64_t h, int64_t w, int64_t c,
                   int64_t timeout_ms, float* scores_out, float* heatmaps_out, char* err, size_t err_len) {
  try {
    if (model == nullptr || images == nullptr || scores_out == nullptr || n <= 0 || h <= 0 || w <= 0 ||
        c <= 0) {
      WriteError(err, err_len, "invalid arguments to tfad_model_run");
      return TFAD_RUN_ERROR;
    }
    tensorflow::Tensor input(tensorflow::DT_UINT8, tensorflow::TensorShape({n, h, w, c}));
    std::memcpy(input.flat<uint8_t>().data(), images, static_cast<size_t>(n * h * w * c));
    std::vector<std::string> fetches = {model->score_tensor};
    if (heatmaps_out != nullptr) fetches.push_back(model->heatmap_tensor);

    tensorflow::RunOptions run_options;
    if (timeout_ms > 0) run_options.set_timeout_in_ms(timeout_ms);
    tensorflow::RunMetadata run_metadata;
    std::vector<tensorflow::Tensor> outputs;
    const auto status = model->bundle.session->Run(run_options, {{model->input_tensor, input}}, fetches, {},
                                                   &outputs, &run_metadata);
    if (!status.ok()) {
      WriteError(err, err_len, std::string("TensorFlow run failed: ") + std::string(status.message()));
      return status.code() == absl::StatusCode::kDeadlineExceeded ? TFAD_RUN_DEADLINE_EXCEEDED
                                                                   : TFAD_RUN_ERROR;
    }
    const tensorflow::Tensor& scores = outputs.at(0);
    if (scores.dtype() != tensorflow::DT_FLOAT || scores.dims() != 1 || scores.dim_size(0) != n) {
      WriteError(err, err_len, "output 'score' has shape " + ShapeString(scores) + ", expected [" +
                                   std::to_string(n) + "] float32");
      return TFAD_RUN_ERROR;
    }
    std::memcpy(scores_out, scores.flat<float>().data(), static_cast<size_t>(n) * sizeof(float));
    if (heatmaps_out != nullptr) {
      const tensorflow::Tensor& heatmaps = outputs.at(1);
      if (heatmaps.dtype() != tensorflow::DT_FLOAT || heatmaps.NumElements() != n * h * w ||
          heatmaps.dim_size(0) != n) {
        WriteError(err, err_len, "output 'heatmap' has shape " + ShapeString(heatmaps) + ", expected [" +
                                     std::to_string(n) + "," + std::to_string(h) + "," + std::to_string(w) +
                                     "] float32");
        return TFAD_RUN_ERROR;
      }
      std::memcpy(heatmaps_out, heatmaps.flat<float>().data(), static_cast<size_t>(n * h * w) * sizeof(float));
    }
    return TFAD_RUN_OK;
  } catch (const std::exception& e) {
    WriteError(err, err_len, std::string("exception during run: ") + e.what());
  } catch (...) {
    WriteError(err, err_len, "unknown exception during run");
  }
  return TFAD_RUN_ERROR;
}

void tfad_model_free(TfadModel* model) { delete model; }

}  // extern "C"
