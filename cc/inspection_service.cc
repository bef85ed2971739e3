#include "cc/inspection_service.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <new>

#include "cc/png_codec.h"
#include "cc/structured_log.h"
#include "cc/verdict.h"

namespace tfad {
namespace {

namespace pb = tfad::inspection::v1;
using Clock = std::chrono::steady_clock;

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// State shared between the RPC thread (which may give up at the deadline) and the inference thread.
struct InferenceJob {
  std::shared_ptr<const Servable> servable;
  DecodedBatch batch;
  bool want_heatmaps = false;
  Clock::time_point deadline;

  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  RunCode code = RunCode::kError;
  std::string error;
  std::vector<float> scores, heatmaps;
  Clock::time_point started, finished;
};

// An exception out of the model (std::bad_alloc from the TensorFlow client, anything else) ends the job as an
// inference error: logged, and answered REJECT_INCOMPLETE by the RPC thread. Nothing here may throw again.
void FailJob(const InferenceJob& job, const char* what, std::string* error) noexcept {
  try {
    *error = std::string("inference threw an exception: ") + what;
  } catch (...) {
    error->clear();  // out of memory even for the message: the reply still says INFERENCE_ERROR
  }
  try {
    LogEvent(LogLevel::kError, "inference_exception",
             {{"model", job.servable->name}, {"version", std::to_string(job.servable->version)}, {"error", *error}});
  } catch (...) {
  }
}

void RunJob(const std::shared_ptr<InferenceJob>& job) {
  const Clock::time_point started = Clock::now();
  RunCode code = RunCode::kError;
  std::string error;
  std::vector<float> scores, heatmaps;
  try {
    if (started >= job->deadline) {
      code = RunCode::kDeadlineExceeded;  // expired while queued: do not spend TensorFlow time on it
      error = "deadline passed while queued";
    } else {
      const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(job->deadline - started).count();
      const DecodedBatch& b = job->batch;
      code = job->servable->model->Run(b.pixels.data(), b.n, b.height, b.width, b.channels, std::max<int64_t>(1, remaining + 1),
                                       &scores, job->want_heatmaps ? &heatmaps : nullptr, &error);
    }
  } catch (const std::bad_alloc&) {
    code = RunCode::kError;
    FailJob(*job, "std::bad_alloc (out of memory)", &error);
  } catch (const std::exception& e) {
    code = RunCode::kError;
    FailJob(*job, e.what(), &error);
  } catch (...) {
    code = RunCode::kError;
    FailJob(*job, "a non-standard exception", &error);
  }
  const size_t heatmap_values = static_cast<size_t>(job->batch.n) * job->batch.height * job->batch.width;
  if (code == RunCode::kOk && job->want_heatmaps && heatmaps.size() != heatmap_values) {
    // The reply's PNGs read H x W values per patch from this buffer: a model that returned another count is
    // an inference error, never an out-of-bounds read.
    code = RunCode::kError;
    error = "the model returned " + std::to_string(heatmaps.size()) + " heatmap values for " +
            std::to_string(job->batch.n) + " patches of " + std::to_string(job->batch.width) + "x" +
            std::to_string(job->batch.height) + ", expected " + std::to_string(heatmap_values);
  }
  if (code != RunCode::kOk) {
    scores.clear();
    heatmaps.clear();
  }
  std::lock_guard<std::mutex> lock(job->mu);
  job->code = code;
  job->error = std::move(error);
  job->scores = std::move(scores);
  job->heatmaps = std::move(heatmaps);
  job->started = started;
  job->finished = Clock::now();
  job->done = true;
  job->cv.notify_all();
}

// "patch 3 (region R0, frame 0, vial 2) is blank: every pixel is 0 (a camera or grab failure?); 4 blank patches
// in all"; an RGB pixel is written (r, g, b)
std::string BlankPatchDetail(const pb::InspectRequest& request, const DecodedBatch& batch) {
  const int i = batch.blank.front();
  const pb::Patch& p = request.patches(i);
  const size_t patch_size = static_cast<size_t>(batch.height) * batch.width * batch.channels;
  const uint8_t* pixel = batch.pixels.data() + patch_size * static_cast<size_t>(i);
  std::string value = std::to_string(pixel[0]);
  if (batch.channels > 1) {
    for (int k = 1; k < batch.channels; ++k) value += ", " + std::to_string(pixel[k]);
    value = "(" + value + ")";
  }
  std::string detail = "patch " + std::to_string(i) + " (region " + p.region() + ", frame " + std::to_string(p.frame()) +
                       ", vial " + std::to_string(p.vial()) + ") is blank: every pixel is " + value +
                       " (a camera or grab failure?)";
  if (batch.blank.size() > 1) detail += "; " + std::to_string(batch.blank.size()) + " blank patches in all";
  return detail;
}

// The first condition of the acquisition check that a patch fails, as the detail words it; "" when it passes.
std::string AcquisitionFailure(double mean, double stddev, const AcquisitionLimits& limits) {
  char text[96];  // the numbers are within 0-255
  if (mean < limits.mean_min) {
    std::snprintf(text, sizeof text, "mean gray %.1f is below %.1f", mean, limits.mean_min);
  } else if (mean > limits.mean_max) {
    std::snprintf(text, sizeof text, "mean gray %.1f is above %.1f", mean, limits.mean_max);
  } else if (stddev < limits.std_min) {
    std::snprintf(text, sizeof text, "pixel standard deviation %.2f is below %.2f", stddev, limits.std_min);
  } else {
    return "";
  }
  return text;
}

// "patch 3 (region R1, frame 0, vial 1) fails the acquisition check: mean gray 4.2 is below 80.3 (a lamp, exposure,
// focus or grab failure?); 2 patches fail it in all" for the first failing patch; "" when every patch passes
std::string AcquisitionCheckDetail(const pb::InspectRequest& request, const AcquisitionCheck& check,
                                   const DecodedBatch& batch) {
  if (batch.pixel_mean.size() != static_cast<size_t>(batch.n) || batch.pixel_std.size() != static_cast<size_t>(batch.n)) {
    // never pass a check that could not run (ValidateAndDecode computes the statistics for a manifest with one)
    return "the acquisition check has no pixel statistics for this batch";
  }
  std::string detail;
  int failing = 0;
  for (int i = 0; i < batch.n; ++i) {
    const pb::Patch& p = request.patches(i);
    const size_t at = static_cast<size_t>(i);
    const std::string failure =
        AcquisitionFailure(batch.pixel_mean[at], batch.pixel_std[at], check.LimitsFor(p.region()));
    if (failure.empty()) continue;
    if (++failing == 1) {
      detail = "patch " + std::to_string(i) + " (region " + p.region() + ", frame " + std::to_string(p.frame()) +
               ", vial " + std::to_string(p.vial()) + ") fails the acquisition check: " + failure +
               " (a lamp, exposure, focus or grab failure?)";
    }
  }
  if (failing > 1) detail += "; " + std::to_string(failing) + " patches fail it in all";
  return detail;
}

const char* VerdictName(pb::Verdict v) {
  switch (v) {
    case pb::VERDICT_ACCEPT: return "ACCEPT";
    case pb::VERDICT_REJECT: return "REJECT";
    case pb::VERDICT_REJECT_INCOMPLETE: return "REJECT_INCOMPLETE";
    default: return "UNSPECIFIED";
  }
}

pb::VersionState ToProto(VersionState s) {
  switch (s) {
    case VersionState::kLoading: return pb::VERSION_STATE_LOADING;
    case VersionState::kAvailable: return pb::VERSION_STATE_AVAILABLE;
    case VersionState::kRetired: return pb::VERSION_STATE_RETIRED;
    case VersionState::kFailed: return pb::VERSION_STATE_FAILED;
  }
  return pb::VERSION_STATE_UNSPECIFIED;
}

}  // namespace

InspectionServiceImpl::InspectionServiceImpl(ModelManager* models, InferencePool* pool, ServiceOptions options)
    : models_(models), pool_(pool), options_(std::move(options)) {}

grpc::Status InspectionServiceImpl::Inspect(grpc::ServerContext* context, const pb::InspectRequest* request,
                                            pb::InspectReply* reply) {
  const Clock::time_point received = Clock::now();
  Clock::time_point deadline = received + options_.cycle_budget;
  const auto client_deadline = context->deadline();
  if (client_deadline != std::chrono::system_clock::time_point::max()) {
    // Convert the client's wall-clock deadline to the steady clock and keep time to send the reply.
    const auto left = client_deadline - std::chrono::system_clock::now();
    deadline = std::min(deadline, received + std::chrono::duration_cast<Clock::duration>(left) - options_.reply_margin);
  }
  try {
    return InspectUntil(received, deadline, *request, reply);
  } catch (const std::exception& e) {
    // Never crash and never accept: an unexpected failure is an incomplete inspection.
    const bool ids_ok = ValidateRequestFields(*request).ok();  // never echo an over-long or binary id
    reply->Clear();
    if (ids_ok) {
      reply->set_product_id(request->product_id());
      reply->set_run_id(request->run_id());
    }
    reply->set_verdict(pb::VERDICT_REJECT_INCOMPLETE);
    reply->set_incomplete_reason(pb::INCOMPLETE_REASON_INFERENCE_ERROR);
    reply->set_incomplete_detail(std::string("internal error: ") + e.what());
    LogEvent(LogLevel::kError, "inspect_internal_error",
             {{"product_id", ids_ok ? request->product_id() : ""}, {"error", e.what()}});
    return grpc::Status::OK;
  } catch (...) {
    const bool ids_ok = ValidateRequestFields(*request).ok();
    reply->Clear();
    if (ids_ok) {
      reply->set_product_id(request->product_id());
      reply->set_run_id(request->run_id());
    }
    reply->set_verdict(pb::VERDICT_REJECT_INCOMPLETE);
    reply->set_incomplete_reason(pb::INCOMPLETE_REASON_INFERENCE_ERROR);
    reply->set_incomplete_detail("internal error: a non-standard exception");
    LogEvent(LogLevel::kError, "inspect_internal_error",
             {{"product_id", ids_ok ? request->product_id() : ""}, {"error", "a non-standard exception"}});
    return grpc::Status::OK;
  }
}

grpc::Status InspectionServiceImpl::InspectUntil(Clock::time_point received, Clock::time_point deadline,
                                                 const pb::InspectRequest& request, pb::InspectReply* reply) {
  // The ids and enums first: nothing below may echo or log an over-long or binary id.
  const Status fields = ValidateRequestFields(request);
  if (!fields.ok()) {
    if (ModelSlot* slot = models_->Find(request.model_name())) {
      slot->stats().Record(ModelStatsRecorder::Outcome::kInvalid, 0, 0);
    }
    LogEvent(LogLevel::kWarning, "inspect_invalid", {{"error", fields.message()}});
    reply->Clear();
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, fields.message());
  }
  reply->set_product_id(request.product_id());
  reply->set_run_id(request.run_id());
  double decode_ms = 0, queue_ms = 0, inference_ms = 0;
  ModelSlot* slot = models_->Find(request.model_name());

  auto finish = [&](pb::Verdict verdict, pb::IncompleteReason reason, const std::string& detail) {
    reply->set_verdict(verdict);
    if (verdict == pb::VERDICT_REJECT_INCOMPLETE) {
      reply->set_incomplete_reason(reason);
      reply->set_incomplete_detail(detail);
      reply->set_product_score(0.0f);
      reply->clear_patches();
    }
    const double total_ms = MsBetween(received, Clock::now());
    pb::Timings* t = reply->mutable_timings();
    t->set_decode_ms(decode_ms);
    t->set_queue_ms(queue_ms);
    t->set_inference_ms(inference_ms);
    t->set_total_ms(total_ms);
    if (slot != nullptr) {
      slot->stats().Record(verdict == pb::VERDICT_ACCEPT   ? ModelStatsRecorder::Outcome::kAccept
                           : verdict == pb::VERDICT_REJECT ? ModelStatsRecorder::Outcome::kReject
                                                           : ModelStatsRecorder::Outcome::kIncomplete,
                           total_ms, inference_ms);
    }
    if (options_.log_requests || verdict == pb::VERDICT_REJECT_INCOMPLETE) {
      LogEvent(verdict == pb::VERDICT_REJECT_INCOMPLETE ? LogLevel::kWarning : LogLevel::kInfo, "inspect",
               {{"model", reply->model_name()},
                {"version", std::to_string(reply->model_version())},
                {"station", request.station_id()},
                {"product_id", request.product_id()},
                {"run_id", request.run_id()},
                {"patches", std::to_string(request.patches_size())},
                {"verdict", VerdictName(verdict)},
                {"reason", verdict == pb::VERDICT_REJECT_INCOMPLETE ? pb::IncompleteReason_Name(reason) : ""},
                {"detail", detail},
                {"product_score", std::to_string(reply->product_score())},
                {"decode_ms", FormatMs(decode_ms)},
                {"queue_ms", FormatMs(queue_ms)},
                {"inference_ms", FormatMs(inference_ms)},
                {"total_ms", FormatMs(total_ms)}});
    }
    return grpc::Status::OK;
  };

  if (slot == nullptr) {
    const std::string message = "unknown model \"" + request.model_name() + "\"; this server serves: " + models_->NameList();
    LogEvent(LogLevel::kWarning, "inspect_invalid", {{"product_id", request.product_id()}, {"error", message}});
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
  }
  const std::shared_ptr<const Servable> servable = slot->Current();
  if (servable == nullptr) {
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_MODEL_UNAVAILABLE,
                  "no version of model " + slot->name() + " is loaded (see GetModelStatus)");
  }
  reply->set_model_name(servable->name);
  reply->set_model_version(servable->version);

  auto job = std::make_shared<InferenceJob>();
  job->servable = servable;
  job->deadline = deadline;
  job->want_heatmaps = request.heatmaps() != pb::HEATMAP_MODE_NONE;
  const Status valid = ValidateAndDecode(request, servable->manifest, options_.limits, &job->batch);
  const Clock::time_point decoded = Clock::now();
  decode_ms = MsBetween(received, decoded);
  if (!valid.ok()) {
    slot->stats().Record(ModelStatsRecorder::Outcome::kInvalid, 0, 0);
    LogEvent(LogLevel::kWarning, "inspect_invalid",
             {{"model", servable->name},
              {"station", request.station_id()},
              {"product_id", request.product_id()},
              {"error", valid.message()}});
    reply->Clear();
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, valid.message());
  }
  if (servable->manifest.reject_blank_patches && !job->batch.blank.empty()) {
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_BLANK_PATCH,
                  BlankPatchDetail(request, job->batch));
  }
  // After the blank rule (a blank product still answers BLANK_PATCH), before the model: a dark, saturated or
  // flat frame some models accept is not inspected.
  if (const auto& check = servable->manifest.acquisition_check) {
    const std::string detail = AcquisitionCheckDetail(request, *check, job->batch);
    if (!detail.empty()) {
      return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_ACQUISITION_CHECK, detail);
    }
  }
  const std::string budget_detail = [&] {
    return "no verdict within the time available (" + FormatMs(MsBetween(received, deadline)) +
           " ms: the earlier of the cycle budget and the client deadline minus the reply margin)";
  }();
  if (decoded >= deadline) {
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_DEADLINE_EXCEEDED,
                  budget_detail + "; deadline passed while decoding");
  }
  const std::vector<float> thresholds = job->batch.thresholds;
  if (!pool_->TrySubmit([job] { RunJob(job); })) {
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_OVERLOADED,
                  "inference queue full (--max_queue); request not run");
  }

  std::unique_lock<std::mutex> lock(job->mu);
  if (!job->cv.wait_until(lock, deadline, [&] { return job->done; })) {
    lock.unlock();
    // The inference thread finishes (or times out) on its own; its result is dropped.
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_DEADLINE_EXCEEDED, budget_detail);
  }
  queue_ms = MsBetween(decoded, job->started);
  inference_ms = MsBetween(job->started, job->finished);
  const RunCode code = job->code;
  const std::string run_error = job->error;
  std::vector<float> scores = std::move(job->scores);
  std::vector<float> heatmaps = std::move(job->heatmaps);
  lock.unlock();

  if (code == RunCode::kDeadlineExceeded) {
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_DEADLINE_EXCEEDED, budget_detail + ": " + run_error);
  }
  if (code != RunCode::kOk) {
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_INFERENCE_ERROR, run_error);
  }
  const VerdictResult verdict = DecideProduct(scores, thresholds);
  if (verdict.verdict == ProductVerdict::kRejectIncomplete) {
    return finish(pb::VERDICT_REJECT_INCOMPLETE, pb::INCOMPLETE_REASON_INFERENCE_ERROR, verdict.error);
  }
  const int H = job->batch.height, W = job->batch.width;
  for (int i = 0; i < request.patches_size(); ++i) {
    const pb::Patch& p = request.patches(i);
    pb::PatchResult* r = reply->add_patches();
    r->set_index(static_cast<uint32_t>(i));
    r->set_region(p.region());
    r->set_frame(p.frame());
    r->set_vial(p.vial());
    r->set_score(scores[static_cast<size_t>(i)]);
    r->set_threshold(thresholds[static_cast<size_t>(i)]);
    const bool rejected = verdict.patch_rejected[static_cast<size_t>(i)];
    r->set_decision(rejected ? pb::PATCH_DECISION_REJECT : pb::PATCH_DECISION_ACCEPT);
    const bool heatmap_wanted = request.heatmaps() == pb::HEATMAP_MODE_ALL ||
                                (request.heatmaps() == pb::HEATMAP_MODE_REJECTED && rejected);
    if (heatmap_wanted && !heatmaps.empty()) {
      // Heatmaps are extras: once the deadline is reached, or if one cannot be encoded, the rest are
      // omitted (counted in heatmaps_omitted) so the verdict still arrives in time.
      if (Clock::now() >= deadline) {
        reply->set_heatmaps_omitted(reply->heatmaps_omitted() + 1);
        continue;
      }
      std::string png;
      if (EncodeHeatmapPng(heatmaps.data() + static_cast<size_t>(i) * H * W, W, H, &png).ok()) {
        r->set_heatmap_png(std::move(png));
      } else {
        reply->set_heatmaps_omitted(reply->heatmaps_omitted() + 1);
      }
    }
  }
  reply->set_product_score(verdict.product_score);
  return finish(verdict.verdict == ProductVerdict::kAccept ? pb::VERDICT_ACCEPT : pb::VERDICT_REJECT,
                pb::INCOMPLETE_REASON_UNSPECIFIED, "");
}

grpc::Status InspectionServiceImpl::GetModelStatus(grpc::ServerContext* /*context*/, const pb::GetModelStatusRequest* request,
                                                   pb::GetModelStatusReply* reply) {
  reply->set_server_kind("cc");
  reply->set_server_version(options_.server_version);
  std::vector<ModelSlot*> slots;
  if (request->model_name().empty()) {
    slots = models_->Slots();
  } else if (ModelSlot* slot = models_->Find(request->model_name())) {
    slots.push_back(slot);
  } else {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "unknown model \"" + request->model_name() + "\"; this server serves: " + models_->NameList());
  }
  for (ModelSlot* slot : slots) {
    pb::ModelStatus* m = reply->add_models();
    m->set_name(slot->name());
    m->set_base_path(slot->base_path());
    if (const auto current = slot->Current()) {
      m->set_serving_version(current->version);
      m->set_input_height(static_cast<uint32_t>(current->manifest.height));
      m->set_input_width(static_cast<uint32_t>(current->manifest.width));
      m->set_input_channels(static_cast<uint32_t>(current->manifest.channels));
      m->set_resize_policy(ResizePolicyName(current->manifest.resize));
    }
    for (const VersionRecord& r : slot->Versions()) {
      pb::ModelVersionStatus* v = m->add_versions();
      v->set_version(r.version);
      v->set_state(ToProto(r.state));
      v->set_error(r.error);
      v->set_state_since_unix_s(r.state_since_unix_s);
      v->set_load_ms(r.load_ms);
    }
    const StatsSnapshot s = slot->stats().Snapshot();
    pb::ModelStats* st = m->mutable_stats();
    st->set_requests_total(s.requests_total);
    st->set_accepted(s.accepted);
    st->set_rejected(s.rejected);
    st->set_rejected_incomplete(s.rejected_incomplete);
    st->set_invalid(s.invalid);
    st->set_latency_p50_ms(s.latency_p50_ms);
    st->set_latency_p99_ms(s.latency_p99_ms);
    st->set_latency_max_ms(s.latency_max_ms);
    st->set_inference_mean_ms(s.inference_mean_ms);
  }
  return grpc::Status::OK;
}

}  // namespace tfad
