#include "cc/server_flags.h"

#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <thread>

namespace tfad {
namespace {

struct FlagSpec {
  const char* name;
  const char* default_text;
  const char* help;
  std::function<Status(const std::string&, ServerFlags*)> set;
};

Status ParseInt(const std::string& name, const std::string& text, int64_t lo, int64_t hi, int64_t* out) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || end == nullptr || *end != '\0') {
    return Status::Error("--" + name + ": \"" + text + "\" is not an integer");
  }
  if (v < lo || v > hi) {
    return Status::Error("--" + name + ": " + text + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  *out = v;
  return Status::Ok();
}

template <typename T>
std::function<Status(const std::string&, ServerFlags*)> IntFlag(const char* name, T ServerFlags::*field, int64_t lo,
                                                                  int64_t hi) {
  return [=](const std::string& text, ServerFlags* f) {
    int64_t v = 0;
    Status s = ParseInt(name, text, lo, hi, &v);
    if (s.ok()) f->*field = static_cast<T>(v);
    return s;
  };
}

std::function<Status(const std::string&, ServerFlags*)> StringFlag(std::string ServerFlags::*field) {
  return [=](const std::string& text, ServerFlags* f) {
    f->*field = text;
    return Status::Ok();
  };
}

const std::vector<FlagSpec>& Specs() {
  static const std::vector<FlagSpec> specs = {
      {"listen", "127.0.0.1:8500",
       "Address to serve on, HOST:PORT. Loopback by default; use 0.0.0.0:PORT to accept the line network. "
       "Port 0 picks a free port (logged in the event=serving line).",
       StringFlag(&ServerFlags::listen)},
      {"models_root", "savedmodels", "Directory holding <name>/<version>/ SavedModel directories.",
       StringFlag(&ServerFlags::models_root)},
      {"models", "(all)",
       "Comma-separated model names under --models_root to serve; the first is the default for requests "
       "without model_name. Default: every subdirectory that has a version directory.",
       [](const std::string& text, ServerFlags* f) {
         f->models.clear();
         std::stringstream ss(text);
         std::string item;
         while (std::getline(ss, item, ',')) {
           if (!item.empty()) f->models.push_back(item);
         }
         return Status::Ok();
       }},
      {"tf_backend", "(next to the binary)", "Path of libtfad_tf_backend.so (the TensorFlow back end).",
       StringFlag(&ServerFlags::tf_backend)},
      {"poll_interval_ms", "5000", "How often to look for new model versions; 0 = only at start-up.",
       IntFlag("poll_interval_ms", &ServerFlags::poll_interval_ms, 0, 86400000)},
      {"cycle_budget_ms", "450",
       "Longest time from receiving a request to its verdict. When inference cannot finish within it (or "
       "within the client's gRPC deadline, whichever is earlier) the verdict is REJECT_INCOMPLETE.",
       IntFlag("cycle_budget_ms", &ServerFlags::cycle_budget_ms, 1, 600000)},
      {"reply_margin_ms", "25",
       "Time reserved before the client's deadline to send the reply, so an incomplete verdict arrives "
       "instead of a DEADLINE_EXCEEDED status.",
       IntFlag("reply_margin_ms", &ServerFlags::reply_margin_ms, 0, 10000)},
      {"inference_threads", "1",
       "Fixed number of threads running TensorFlow (products inferred concurrently). Each run already uses "
       "--tf_intra_op_threads cores.",
       IntFlag("inference_threads", &ServerFlags::inference_threads, 1, 64)},
      {"inference_nice", "0",
       "Added to the nice value of the threads that run TensorFlow (model loads, inference and the pools "
       "TensorFlow creates from them); the gRPC threads keep theirs. 0 = same priority. Measured: no gain in "
       "deadline replies under load, and under another process's load a positive value starves inference "
       "(docs/serving.md, fail-safe rule 3).",
       IntFlag("inference_nice", &ServerFlags::inference_nice, 0, 19)},
      {"max_queue", "8", "Products waiting for an inference thread; beyond it requests get REJECT_INCOMPLETE "
                         "(OVERLOADED) at once.",
       IntFlag("max_queue", &ServerFlags::max_queue, 1, 10000)},
      {"tf_intra_op_threads", "0", "TensorFlow intra-op threads per run (0 = all cores).",
       IntFlag("tf_intra_op_threads", &ServerFlags::tf_intra_op_threads, 0, 256)},
      {"tf_inter_op_threads", "0",
       "TensorFlow inter-op threads, shared by the inference threads (0 = TensorFlow's default; at least "
       "--inference_threads).",
       IntFlag("tf_inter_op_threads", &ServerFlags::tf_inter_op_threads, 0, 256)},
      {"warmup_batch", "60", "Images in the warm-up run done when a version loads (use the usual product size).",
       IntFlag("warmup_batch", &ServerFlags::warmup_batch, 1, 4096)},
      {"max_patches", "256", "Most patches accepted in one product.",
       IntFlag("max_patches", &ServerFlags::max_patches, 1, 100000)},
      {"max_patch_bytes", "262144",
       "Most encoded bytes accepted for one patch (4x the line's 256x256 gray patch; a raw 512x512 gray or "
       "256x256 RGB patch fits).",
       IntFlag("max_patch_bytes", &ServerFlags::max_patch_bytes, 1, int64_t{1} << 30)},
      {"max_image_pixels", "16777216", "Most pixels (width*height) of one patch before resizing.",
       IntFlag("max_image_pixels", &ServerFlags::max_image_pixels, 1, int64_t{1} << 31)},
      {"max_message_bytes", "0 (derived: 69206016)",
       "gRPC message size limit (requests and replies). 0 = derived from the largest legal request: "
       "max_patches * (max_patch_bytes + 256) + 4096 bytes, plus a 1 MiB margin, rounded up to a MiB "
       "(66 MiB with the default limits). Otherwise 1024 to 2146435072.",
       [](const std::string& text, ServerFlags* f) {
         int64_t v = 0;
         Status s = ParseInt("max_message_bytes", text, 0, int64_t{2047} << 20, &v);
         if (s.ok() && v != 0 && v < 1024) {
           s = Status::Error("--max_message_bytes: " + text + " is out of range (0 = derived, or [1024, " +
                             std::to_string(int64_t{2047} << 20) + "])");
         }
         if (s.ok()) f->max_message_bytes = v;
         return s;
       }},
      {"max_rpc_threads", "8",
       "Most gRPC threads handling calls (validation, decoding, replies). Each holds up to one request of "
       "--max_message_bytes: 8 x 66 MiB = 528 MiB by default (docs/serving.md, \"Memory\").",
       IntFlag("max_rpc_threads", &ServerFlags::max_rpc_threads, 2, 1024)},
      {"tls_cert", "", "Server certificate chain (PEM). With --tls_key enables TLS; plaintext otherwise.",
       StringFlag(&ServerFlags::tls_cert)},
      {"tls_key", "", "Server private key (PEM).", StringFlag(&ServerFlags::tls_key)},
      {"tls_client_ca", "",
       "CA certificates (PEM) for client certificates. When set, clients must present a certificate signed "
       "by one of them (mutual TLS).",
       StringFlag(&ServerFlags::tls_client_ca)},
      {"log_format", "kv", "Log line format: kv (key=value) or json. One line per event on stderr.",
       [](const std::string& text, ServerFlags* f) {
         if (text != "kv" && text != "json") return Status::Error("--log_format: must be kv or json, got \"" + text + "\"");
         f->log_format = text;
         return Status::Ok();
       }},
      {"log_requests", "true", "Log one line per Inspect call (true/false).",
       [](const std::string& text, ServerFlags* f) {
         if (text == "true" || text == "1") {
           f->log_requests = true;
         } else if (text == "false" || text == "0") {
           f->log_requests = false;
         } else {
           return Status::Error("--log_requests: must be true or false, got \"" + text + "\"");
         }
         return Status::Ok();
       }},
  };
  return specs;
}

}  // namespace

Status ParseServerFlags(int argc, const char* const* argv, ServerFlags* flags, bool* help) {
  *help = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "--helpfull") {
      *help = true;
      return Status::Ok();
    }
    if (arg.rfind("--", 0) != 0) return Status::Error("unexpected argument \"" + arg + "\" (flags are --name=value)");
    arg = arg.substr(2);
    std::string name = arg, value;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];  // --name value
    } else {
      return Status::Error("--" + name + " needs a value");
    }
    for (char& ch : name) {
      if (ch == '-') ch = '_';
    }
    bool found = false;
    for (const FlagSpec& spec : Specs()) {
      if (name == spec.name) {
        Status s = spec.set(value, flags);
        if (!s.ok()) return s;
        found = true;
        break;
      }
    }
    if (!found) return Status::Error("unknown flag --" + name + " (see --help)");
  }
  if (flags->tls_cert.empty() != flags->tls_key.empty()) {
    return Status::Error("--tls_cert and --tls_key must be given together");
  }
  if (!flags->tls_client_ca.empty() && flags->tls_cert.empty()) {
    return Status::Error("--tls_client_ca needs --tls_cert and --tls_key (client certificates require TLS)");
  }
  return Status::Ok();
}

int TensorFlowDefaultInterOpThreads() {
  // As TensorFlow sizes the pool when the session option is 0: $TF_NUM_INTEROP_THREADS, else one thread per
  // CPU this process may run on (its affinity mask, which a container or taskset narrows).
  // TensorFlow ignores a value that is not a whole number ("4abc"), so this does too.
  if (const char* env = std::getenv("TF_NUM_INTEROP_THREADS")) {
    char* end = nullptr;
    errno = 0;
    const long from_env = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && errno == 0 && from_env > 0 && from_env <= 4096) {
      return static_cast<int>(from_env);
    }
  }
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0) return CPU_COUNT(&cpus);
  const unsigned online = std::thread::hardware_concurrency();
  return online > 0 ? static_cast<int>(online) : 1;
}

Status CheckInterOpPool(const ServerFlags& flags, int default_inter_op_threads) {
  // The inference threads share one session's inter-op pool, which runs every op of their products: fewer
  // pool threads than inference threads queues their products behind each other (measured: 2 threads with
  // --tf_inter_op_threads=1 held 8 products/s where 1 thread held 12; docs/performance.md).
  const bool explicit_pool = flags.tf_inter_op_threads > 0;
  const int pool = explicit_pool ? flags.tf_inter_op_threads : default_inter_op_threads;
  if (pool >= flags.inference_threads) return Status::Ok();
  const std::string threads = std::to_string(flags.inference_threads);
  const std::string why = ": the inference threads would share those inter-op threads and queue behind each other";
  if (explicit_pool) {
    return Status::Error("--tf_inter_op_threads=" + std::to_string(pool) + " is fewer than --inference_threads=" +
                         threads + why + "; give at least " + threads +
                         " (0, TensorFlow's default, is $TF_NUM_INTEROP_THREADS, else one per CPU)");
  }
  return Status::Error("--inference_threads=" + threads + " is more than the " + std::to_string(pool) +
                       " inter-op threads TensorFlow gives this process by default (--tf_inter_op_threads=0: "
                       "one per CPU it may run on, or $TF_NUM_INTEROP_THREADS)" + why +
                       "; give --tf_inter_op_threads=" + threads + " or fewer inference threads");
}

std::string ServerFlagsHelp() {
  std::string out =
      "tfad_server: the tfad line-PC inspection service (gRPC tfad.inspection.v1.InspectionService and\n"
      "grpc.health.v1.Health) serving SavedModels from <models_root>/<name>/<version>/.\n\n"
      "Usage: tfad_server [--flag=value ...]\n\nFlags:\n";
  for (const FlagSpec& spec : Specs()) {
    out += "  --" + std::string(spec.name) + " (default: " + (spec.default_text[0] ? spec.default_text : "none") + ")\n";
    // Wrap help at ~96 columns.
    std::stringstream words(spec.help);
    std::string word, line = "      ";
    while (words >> word) {
      if (line.size() + word.size() > 100) {
        out += line + "\n";
        line = "      ";
      }
      line += word + " ";
    }
    out += line + "\n";
  }
  out += "\nSee docs/serving.md for the fail-safe rules, the resize policy and integration.\n";
  return out;
}

}  // namespace tfad
