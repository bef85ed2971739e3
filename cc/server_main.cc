// tfad_server: the line-PC inspection service. See `tfad_server --help` and docs/serving.md.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "cc/inference_pool.h"
#include "cc/inspection_service.h"
#include "cc/model_manager.h"
#include "cc/server_flags.h"
#include "cc/structured_log.h"
#include "cc/tf_backend_client.h"
#include "cc/thread_priority.h"

namespace {

constexpr char kServiceName[] = "tfad.inspection.v1.InspectionService";
constexpr char kServerVersion[] = "0.1.0";
std::atomic<bool> g_shutdown{false};

void OnSignal(int) { g_shutdown = true; }

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream content;
  content << in.rdbuf();
  *out = content.str();
  return true;
}

int Fail(const std::string& message) {
  tfad::LogEvent(tfad::LogLevel::kError, "fatal", {{"error", message}});
  std::fprintf(stderr, "tfad_server: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  tfad::ServerFlags flags;
  bool help = false;
  tfad::Status s = tfad::ParseServerFlags(argc, argv, &flags, &help);
  if (help) {
    std::fputs(tfad::ServerFlagsHelp().c_str(), stdout);
    return 0;
  }
  if (s.ok()) s = tfad::CheckInterOpPool(flags, tfad::TensorFlowDefaultInterOpThreads());
  if (!s.ok()) {
    std::fprintf(stderr, "tfad_server: error: %s\n", s.message().c_str());
    return 2;
  }
  tfad::SetLogFormat(flags.log_format == "json" ? tfad::LogFormat::kJson : tfad::LogFormat::kKeyValue);
  // TensorFlow's own INFO lines are not structured; keep warnings and errors.
  setenv("TF_CPP_MIN_LOG_LEVEL", "1", /*overwrite=*/0);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  std::unique_ptr<tfad::TfBackend> backend;
  const std::string backend_path = flags.tf_backend.empty() ? tfad::DefaultBackendPath() : flags.tf_backend;
  tfad::TfBackendOptions backend_options;
  backend_options.intra_op_threads = flags.tf_intra_op_threads;
  backend_options.inter_op_threads = flags.tf_inter_op_threads;
  // Everything that touches TensorFlow runs on threads at --inference_nice, and the threads TensorFlow
  // creates inherit it; the gRPC threads, created from this one, keep the normal priority.
  tfad::RunAtLowerPriority(flags.inference_nice,
                           [&] { s = tfad::TfBackend::Open(backend_path, backend_options, &backend); });
  if (!s.ok()) return Fail(s.message());
  tfad::LogEvent(tfad::LogLevel::kInfo, "starting",
                 {{"server_version", kServerVersion}, {"tf_version", backend->tf_version()}, {"tf_backend", backend_path},
                  {"models_root", flags.models_root}, {"cycle_budget_ms", std::to_string(flags.cycle_budget_ms)},
                  {"inference_threads", std::to_string(flags.inference_threads)},
                  {"inference_nice", std::to_string(flags.inference_nice)}});

  std::unique_ptr<tfad::ModelManager> models;
  tfad::LoadOptions load_options;
  load_options.warmup_batch = flags.warmup_batch;
  s = tfad::ModelManager::Create(flags.models_root, flags.models, backend.get(), load_options, &models);
  if (!s.ok()) return Fail(s.message());
  // Initial load; the server starts even if it failed (health says NOT_SERVING).
  tfad::RunAtLowerPriority(flags.inference_nice, [&] { models->PollAll(); });

  tfad::InferencePool pool(flags.inference_threads, flags.max_queue, flags.inference_nice);
  tfad::ServiceOptions service_options;
  service_options.cycle_budget = std::chrono::milliseconds(flags.cycle_budget_ms);
  service_options.reply_margin = std::chrono::milliseconds(flags.reply_margin_ms);
  service_options.limits.max_patches = flags.max_patches;
  service_options.limits.max_patch_bytes = flags.max_patch_bytes;
  service_options.limits.max_image_pixels = flags.max_image_pixels;
  const int64_t max_message_bytes =
      flags.max_message_bytes != 0 ? flags.max_message_bytes : tfad::DefaultMaxMessageBytes(service_options.limits);
  tfad::LogEvent(tfad::LogLevel::kInfo, "limits",
                 {{"max_patches", std::to_string(flags.max_patches)},
                  {"max_patch_bytes", std::to_string(flags.max_patch_bytes)},
                  {"max_message_bytes", std::to_string(max_message_bytes)},
                  {"largest_legal_request_bytes",
                   std::to_string(tfad::LargestLegalRequestBytes(service_options.limits))},
                  {"max_rpc_threads", std::to_string(flags.max_rpc_threads)},
                  {"messages_in_handlers_bytes", std::to_string(max_message_bytes * flags.max_rpc_threads)}});
  service_options.log_requests = flags.log_requests;
  service_options.server_version = kServerVersion;
  tfad::InspectionServiceImpl service(models.get(), &pool, service_options);

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!flags.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl(flags.tls_client_ca.empty()
                                              ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (!ReadFile(flags.tls_cert, &pair.cert_chain)) return Fail("cannot read --tls_cert " + flags.tls_cert);
    if (!ReadFile(flags.tls_key, &pair.private_key)) return Fail("cannot read --tls_key " + flags.tls_key);
    if (!flags.tls_client_ca.empty() && !ReadFile(flags.tls_client_ca, &ssl.pem_root_certs)) {
      return Fail("cannot read --tls_client_ca " + flags.tls_client_ca);
    }
    ssl.pem_key_cert_pairs.push_back(pair);
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(flags.listen, credentials, &selected_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
  grpc::ResourceQuota quota("tfad_server");
  quota.SetMaxThreads(flags.max_rpc_threads);
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || selected_port == 0) return Fail("cannot listen on " + flags.listen);

  auto* health = server->GetHealthCheckService();
  bool serving = models->AllServing();
  health->SetServingStatus("", serving);
  health->SetServingStatus(kServiceName, serving);
  tfad::LogEvent(tfad::LogLevel::kInfo, "serving",
                 {{"listen", flags.listen}, {"port", std::to_string(selected_port)},
                  {"tls", flags.tls_cert.empty() ? "off" : (flags.tls_client_ca.empty() ? "server" : "mutual")},
                  {"models", models->NameList()}, {"health", serving ? "SERVING" : "NOT_SERVING"}});
  models->StartPolling(flags.poll_interval_ms, flags.inference_nice);

  // Health follows model availability: SERVING only while every configured model has a version.
  while (!g_shutdown) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const bool now_serving = models->AllServing();
    if (now_serving != serving) {
      serving = now_serving;
      health->SetServingStatus("", serving);
      health->SetServingStatus(kServiceName, serving);
      tfad::LogEvent(tfad::LogLevel::kInfo, "health", {{"status", serving ? "SERVING" : "NOT_SERVING"}});
    }
  }
  tfad::LogEvent(tfad::LogLevel::kInfo, "stopping", {});
  health->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  models->StopPolling();
  tfad::LogEvent(tfad::LogLevel::kInfo, "stopped", {});
  return 0;
}
