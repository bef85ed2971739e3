// Command-line flags of tfad_server (`--name=value`; `--help` prints this table).
#ifndef TFAD_CC_SERVER_FLAGS_H_
#define TFAD_CC_SERVER_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc/status.h"

namespace tfad {

struct ServerFlags {
  std::string listen = "127.0.0.1:8500";
  std::string models_root = "savedmodels";
  std::vector<std::string> models;  // empty = all under models_root
  std::string tf_backend;           // empty = next to the executable
  int poll_interval_ms = 5000;
  int cycle_budget_ms = 450;
  int reply_margin_ms = 25;  // docs/serving.md "Deadline replies under load": 99.97 % in time, both cores busy
  int inference_threads = 1;
  int inference_nice = 0;
  int max_queue = 8;
  int tf_intra_op_threads = 0;
  int tf_inter_op_threads = 0;
  int warmup_batch = 60;
  int max_patches = 256;
  int64_t max_patch_bytes = 256 << 10;
  int64_t max_image_pixels = 4096 * 4096;
  int64_t max_message_bytes = 0;  // 0 = DefaultMaxMessageBytes of the request limits (66 MiB by default)
  int max_rpc_threads = 8;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string log_format = "kv";
  bool log_requests = true;
};

// Parses argv. Unknown flags, malformed values and out-of-range numbers are errors naming the flag.
// Sets *help when --help/-h was given.
Status ParseServerFlags(int argc, const char* const* argv, ServerFlags* flags, bool* help);

// The inter-op threads TensorFlow's session gets when --tf_inter_op_threads is 0: $TF_NUM_INTEROP_THREADS,
// else the CPUs in this process's affinity mask.
int TensorFlowDefaultInterOpThreads();

// Refuses an inter-op pool (--tf_inter_op_threads, or default_inter_op_threads when that is 0) smaller than
// --inference_threads, with an error saying which flag to change. main() passes
// TensorFlowDefaultInterOpThreads(); tests pass a CPU count.
Status CheckInterOpPool(const ServerFlags& flags, int default_inter_op_threads);

// The --help text: every flag, its default and meaning.
std::string ServerFlagsHelp();

}  // namespace tfad

#endif  // TFAD_CC_SERVER_FLAGS_H_
