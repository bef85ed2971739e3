// Plain C ABI of the TensorFlow back end (libtfad_tf_backend.so).
//
// Why a C ABI: TensorFlow's libraries export protobuf 6.31 symbols that clash with the Debian protobuf
// 3.21 used by gRPC, so TensorFlow may not be linked into the gRPC server. The server dlopen()s this
// library with RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND and talks to it only through these functions.
// This header must not include any TensorFlow, protobuf or gRPC header.
#ifndef TFAD_CC_TF_BACKEND_TF_BACKEND_H_
#define TFAD_CC_TF_BACKEND_TF_BACKEND_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Opaque loaded SavedModel (session + resolved signature tensor names). Thread-safe for concurrent runs.
typedef struct TfadModel TfadModel;

// Result codes of tfad_model_run.
enum {
  TFAD_RUN_OK = 0,
  TFAD_RUN_ERROR = 1,             // TensorFlow error or outputs violating the contract
  TFAD_RUN_DEADLINE_EXCEEDED = 2  // the run was cancelled by its timeout
};

// ABI version of this interface; the server refuses a library with another value.
#define TFAD_BACKEND_ABI_VERSION 2  // 2: tfad_model_load takes score_only_signature
int tfad_backend_abi_version(void);

// TensorFlow version string of the linked libraries.
const char* tfad_backend_tf_version(void);

// Loads the SavedModel in `export_dir` (tag "serve") and resolves signature `signature_name`, its input
// `input_key` (must be uint8) and outputs `score_key` and `heatmap_key`. When `score_only_signature` is
// neither NULL nor empty, that signature (same input key, output `score_key`) is resolved too, and runs
// without heatmaps use it: a session runs every output of the signature it calls, so this one saves the
// heatmap's ops. 0 threads = TensorFlow default. Returns NULL on failure and writes a message into err
// (err_len bytes, always NUL-terminated).
TfadModel* tfad_model_load(const char* export_dir, const char* signature_name, const char* input_key,
                           const char* score_key, const char* heatmap_key, const char* score_only_signature,
                           int intra_op_threads, int inter_op_threads, char* err, size_t err_len);

// Runs one batch: `images` is uint8 [n, h, w, c] (NHWC, contiguous). Writes n scores into `scores_out`
// and, when `heatmaps_out` is not NULL, n*h*w floats of the heatmap (when it is NULL, the score-only
// signature runs if the model has one). `timeout_ms` > 0 cancels the run
// after that many milliseconds (TFAD_RUN_DEADLINE_EXCEEDED). Returns a TFAD_RUN_* code; on error writes
// a message into err.
int tfad_model_run(TfadModel* model, const uint8_t* images, int64_t n, int64_t h, int64_t w, int64_t c,
                   int64_t timeout_ms, float* scores_out, float* heatmaps_out, char* err, size_t err_len);

// Frees a model returned by tfad_model_load (NULL is ignored).
void tfad_model_free(TfadModel* model);

#ifdef __cplusplus
}
#endif

#endif  // TFAD_CC_TF_BACKEND_TF_BACKEND_H_
