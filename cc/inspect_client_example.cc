// A minimal firmware-style client of tfad.inspection.v1: one product per cycle, a hard deadline, and a
// fail-safe reading of the answer (anything but an OK reply with VERDICT_ACCEPT rejects the product).
//
//   bazel-bin/cc/inspect_client_example --server=127.0.0.1:8500 --deadline_ms=450
//       --regions=R0,R1,R2,R3 --frames=3 --vials=5 [--width=256 --height=256] [--products=5]
//   (one command line)
//
// The patches here are synthetic gray images; real firmware copies its camera crops into Patch.data.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tfad/inspection/v1/inspection.grpc.pb.h"

namespace pb = tfad::inspection::v1;

namespace {

std::string Flag(int argc, char** argv, const std::string& name, const std::string& fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(prefix, 0) == 0) return arg.substr(prefix.size());
  }
  return fallback;
}

// The product is accepted only on an OK reply whose verdict is ACCEPT.
bool ProductAccepted(const grpc::Status& status, const pb::InspectReply& reply) {
  return status.ok() && reply.verdict() == pb::VERDICT_ACCEPT;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string server = Flag(argc, argv, "server", "127.0.0.1:8500");
  const int deadline_ms = std::atoi(Flag(argc, argv, "deadline_ms", "450").c_str());
  const int frames = std::atoi(Flag(argc, argv, "frames", "3").c_str());
  const int vials = std::atoi(Flag(argc, argv, "vials", "5").c_str());
  const int width = std::atoi(Flag(argc, argv, "width", "256").c_str());
  const int height = std::atoi(Flag(argc, argv, "height", "256").c_str());
  const int products = std::atoi(Flag(argc, argv, "products", "3").c_str());
  std::vector<std::string> regions;
  std::stringstream ss(Flag(argc, argv, "regions", "R0,R1,R2,R3"));
  for (std::string r; std::getline(ss, r, ',');) regions.push_back(r);

  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(), args);
  auto stub = pb::InspectionService::NewStub(channel);

  std::mt19937 rng(7);
  int exit_code = 0;
  for (int p = 0; p < products; ++p) {
    pb::InspectRequest request;
    request.set_product_id("demo-" + std::to_string(p));
    request.set_run_id("run-1");
    request.set_station_id("example");
    request.set_heatmaps(pb::HEATMAP_MODE_REJECTED);
    for (int f = 0; f < frames; ++f) {
      for (int v = 0; v < vials; ++v) {
        for (const std::string& region : regions) {
          pb::Patch* patch = request.add_patches();
          patch->set_region(region);
          patch->set_frame(static_cast<uint32_t>(f));
          patch->set_vial(static_cast<uint32_t>(v));
          patch->set_encoding(pb::IMAGE_ENCODING_RAW_UINT8);
          patch->set_width(static_cast<uint32_t>(width));
          patch->set_height(static_cast<uint32_t>(height));
          patch->set_channels(1);
          std::string pixels(static_cast<size_t>(width) * height, '\0');
          for (char& px : pixels) px = static_cast<char>(100 + rng() % 16);
          patch->set_data(std::move(pixels));
        }
      }
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
    pb::InspectReply reply;
    const auto t0 = std::chrono::steady_clock::now();
    const grpc::Status status = stub->Inspect(&context, request, &reply);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const bool accepted = ProductAccepted(status, reply);
    if (!status.ok()) {
      std::printf("%s: REJECT (rpc failed: %s: %s) %.1f ms\n", request.product_id().c_str(),
                  std::to_string(status.error_code()).c_str(), status.error_message().c_str(), ms);
      exit_code = 1;
      continue;
    }
    std::printf("%s: %s score=%.5f model=%s v%lld patches=%d rejected_patches=%d server_total=%.1f ms rtt=%.1f ms%s%s\n",
                reply.product_id().c_str(), accepted ? "ACCEPT" : pb::Verdict_Name(reply.verdict()).c_str(),
                reply.product_score(), reply.model_name().c_str(), static_cast<long long>(reply.model_version()),
                reply.patches_size(),
                static_cast<int>(std::count_if(reply.patches().begin(), reply.patches().end(),
                                               [](const pb::PatchResult& r) { return r.decision() == pb::PATCH_DECISION_REJECT; })),
                reply.timings().total_ms(), ms, reply.incomplete_detail().empty() ? "" : " detail=",
                reply.incomplete_detail().c_str());
  }
  return exit_code;
}
