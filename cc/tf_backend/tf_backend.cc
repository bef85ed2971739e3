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
  // The score-only signature's input and score (empty: the model has none; runs use the ones above)
  std::string score_only_input;
  std::string score_only_tensor;
};

namespace {

void WriteError(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) return;
  const size_t n = std::min(message.size(), err_len - 1);
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

std::string ShapeString(const tensorflow::Tensor& t) { return t.shape().DebugString(); }

// Resolves `name`'s input `input_key` (uint8) and float outputs `outputs` to tensor names; false with a
// message naming what is missing.
bool ResolveSignature(const tensorflow::MetaGraphDef& graph, const std::string& name, const char* input_key,
                      std::string* input_tensor,
                      std::initializer_list<std::pair<const char*, std::string*>> outputs, std::string* error) {
  const auto& signatures = graph.signature_def();
  const auto sig_it = signatures.find(name);
  if (sig_it == signatures.end()) {
    std::string names;
    for (const auto& kv : signatures) names += (names.empty() ? "" : ", ") + kv.first;
    *error = "signature '" + name + "' not found (has: " + names + ")";
    return false;
  }
  const auto& sig = sig_it->second;
  const auto in_it = sig.inputs().find(input_key);
  if (in_it == sig.inputs().end()) {
    *error = "signature '" + name + "' input '" + input_key + "' not found";
    return false;
  }
  if (in_it->second.dtype() != tensorflow::DT_UINT8) {
    *error = "signature '" + name + "' input '" + input_key + "' is " +
             tensorflow::DataTypeString(in_it->second.dtype()) + ", expected uint8";
    return false;
  }
  *input_tensor = in_it->second.name();
  for (const auto& [key, target] : outputs) {
    const auto out_it = sig.outputs().find(key);
    if (out_it == sig.outputs().end()) {
      *error = "signature '" + name + "' output '" + key + "' not found";
      return false;
    }
    if (out_it->second.dtype() != tensorflow::DT_FLOAT) {
      *error = "signature '" + name + "' output '" + key + "' is not float32";
      return false;
    }
    *target = out_it->second.name();
  }
  return true;
}

}  // namespace

extern "C" {

int tfad_backend_abi_version(void) { return TFAD_BACKEND_ABI_VERSION; }

const char* tfad_backend_tf_version(void) { return TF_Version(); }

TfadModel* tfad_model_load(const char* export_dir, const char* signature_name, const char* input_key,
                           const char* score_key, const char* heatmap_key, const char* score_only_signature,
                           int intra_op_threads, int inter_op_threads, char* err, size_t err_len) {
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
    std::string error;
    const auto& graph = model->bundle.meta_graph_def;
    if (!ResolveSignature(graph, signature_name, input_key, &model->input_tensor,
                          {{score_key, &model->score_tensor}, {heatmap_key, &model->heatmap_tensor}}, &error)) {
      WriteError(err, err_len, error);
      return nullptr;
    }
    if (score_only_signature != nullptr && score_only_signature[0] != '\0' &&
        !ResolveSignature(graph, score_only_signature, input_key, &model->score_only_input,
                          {{score_key, &model->score_only_tensor}}, &error)) {
      WriteError(err, err_len, "the manifest's score-only " + error);
      return nullptr;
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
    // Without heatmaps, the score-only signature (when the model has one) runs only the ops the score needs.
    const bool score_only = heatmaps_out == nullptr && !model->score_only_tensor.empty();
    const std::string& feed = score_only ? model->score_only_input : model->input_tensor;
    std::vector<std::string> fetches = {score_only ? model->score_only_tensor : model->score_tensor};
    if (heatmaps_out != nullptr) fetches.push_back(model->heatmap_tensor);

    tensorflow::RunOptions run_options;
    if (timeout_ms > 0) run_options.set_timeout_in_ms(timeout_ms);
    tensorflow::RunMetadata run_metadata;
    std::vector<tensorflow::Tensor> outputs;
    const auto status = model->bundle.session->Run(run_options, {{feed, input}}, fetches, {},
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
