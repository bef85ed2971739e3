// The gRPC layer: tfad.inspection.v1.InspectionService over the ModelManager and the inference pool.
// Fail-safe rules (docs/serving.md): invalid request -> INVALID_ARGUMENT before any TensorFlow work;
// anything that keeps an inspection from completing in time or correctly -> REJECT_INCOMPLETE, never ACCEPT.
#ifndef TFAD_CC_INSPECTION_SERVICE_H_
#define TFAD_CC_INSPECTION_SERVICE_H_

#include <chrono>
#include <string>

#include "cc/inference_pool.h"
#include "cc/model_manager.h"
#include "cc/validation.h"
#include "tfad/inspection/v1/inspection.grpc.pb.h"

namespace tfad {

struct ServiceOptions {
  std::chrono::milliseconds cycle_budget{450};
  std::chrono::milliseconds reply_margin{25};  // --reply_margin_ms (server_flags.h)
  RequestLimits limits;
  bool log_requests = true;
  std::string server_version = "0.1.0";
};

class InspectionServiceImpl final : public tfad::inspection::v1::InspectionService::Service {
 public:
  InspectionServiceImpl(ModelManager* models, InferencePool* pool, ServiceOptions options);

  grpc::Status Inspect(grpc::ServerContext* context, const tfad::inspection::v1::InspectRequest* request,
                       tfad::inspection::v1::InspectReply* reply) override;
  grpc::Status GetModelStatus(grpc::ServerContext* context, const tfad::inspection::v1::GetModelStatusRequest* request,
                              tfad::inspection::v1::GetModelStatusReply* reply) override;

  // The body of Inspect with the deadline already resolved (steady clock); used by Inspect and tests.
  grpc::Status InspectUntil(std::chrono::steady_clock::time_point received, std::chrono::steady_clock::time_point deadline,
                            const tfad::inspection::v1::InspectRequest& request,
                            tfad::inspection::v1::InspectReply* reply);

 private:
  ModelManager* const models_;
  InferencePool* const pool_;
  const ServiceOptions options_;
};

}  // namespace tfad

#endif  // TFAD_CC_INSPECTION_SERVICE_H_
