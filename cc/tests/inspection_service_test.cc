// The service's fail-safe behaviour with a fake model: never ACCEPT when the inspection did not complete.
#include "cc/inspection_service.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>
#include <vector>

#include "cc/tests/fake_model.h"
#include "cc/tests/test_util.h"

namespace tfad {
namespace {

namespace pb = tfad::inspection::v1;
using Clock = std::chrono::steady_clock;
using testing::AddRawPatch;

class InspectionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::TempDir("svc_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    testing::MakeDir(root_ + "/vials");
    testing::MakeDir(root_ + "/vials/1");
    // Thresholds: R0 0.5, R1 0.25; fake score = mean pixel / 255.
    testing::WriteFile(root_ + "/vials/1/tfad_manifest.json", testing::ManifestJson("vials", 1));
    ASSERT_TRUE(ModelManager::Create(root_, {}, &loader_, LoadOptions{1}, &manager_).ok());
    manager_->PollAll();
    ASSERT_TRUE(manager_->AllServing());
    pool_ = std::make_unique<InferencePool>(1, 2);
    service_ = std::make_unique<InspectionServiceImpl>(manager_.get(), pool_.get(), ServiceOptions{});
  }
  grpc::Status Inspect(const pb::InspectRequest& r, pb::InspectReply* reply, int budget_ms = 1000) {
    const auto now = Clock::now();
    return service_->InspectUntil(now, now + std::chrono::milliseconds(budget_ms), r, reply);
  }
  static pb::InspectRequest Product(uint8_t r0_value, uint8_t r1_value) {
    pb::InspectRequest r;
    r.set_product_id("P1");
    AddRawPatch(&r, "R0", 8, 8, 1, r0_value, 0);
    AddRawPatch(&r, "R1", 8, 8, 1, r1_value, 0);
    return r;
  }

  std::string root_;
  testing::FakeLoader loader_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<InferencePool> pool_;
  std::unique_ptr<InspectionServiceImpl> service_;
};

TEST_F(InspectionServiceTest, AcceptsAndRejectsByRegionThreshold) {
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(Product(102, 51), &reply).ok());  // 0.4 <= 0.5, 0.2 <= 0.25
  EXPECT_EQ(reply.verdict(), pb::VERDICT_ACCEPT);
  EXPECT_NEAR(reply.product_score(), 0.4f, 1e-6);
  ASSERT_EQ(reply.patches_size(), 2);
  EXPECT_FLOAT_EQ(reply.patches(1).threshold(), 0.25f);
  EXPECT_EQ(reply.model_name(), "vials");
  EXPECT_EQ(reply.model_version(), 1);

  pb::InspectReply rejected;
  ASSERT_TRUE(Inspect(Product(102, 77), &rejected).ok());  // 77/255 = 0.302 > 0.25
  EXPECT_EQ(rejected.verdict(), pb::VERDICT_REJECT);
  EXPECT_EQ(rejected.patches(0).decision(), pb::PATCH_DECISION_ACCEPT);
  EXPECT_EQ(rejected.patches(1).decision(), pb::PATCH_DECISION_REJECT);
}

TEST_F(InspectionServiceTest, HeatmapsOnlyForRejectedPatchesWhenAsked) {
  pb::InspectRequest r = Product(102, 77);
  r.set_heatmaps(pb::HEATMAP_MODE_REJECTED);
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(r, &reply).ok());
  EXPECT_TRUE(reply.patches(0).heatmap_png().empty());
  EXPECT_FALSE(reply.patches(1).heatmap_png().empty());
}

TEST_F(InspectionServiceTest, InvalidRequestIsInvalidArgumentBeforeInference) {
  pb::InspectRequest r = Product(1, 1);
  r.mutable_patches(1)->mutable_data()->pop_back();
  pb::InspectReply reply;
  const int runs = loader_.model->runs;
  const grpc::Status s = Inspect(r, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("patch 1 (region R1"), std::string::npos) << s.error_message();
  EXPECT_EQ(loader_.model->runs, runs);
}

TEST_F(InspectionServiceTest, UnknownModelIsInvalidArgument) {
  pb::InspectRequest r = Product(1, 1);
  r.set_model_name("nope");
  pb::InspectReply reply;
  EXPECT_EQ(Inspect(r, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(InspectionServiceTest, SlowInferenceIsRejectIncompleteNeverAccept) {
  loader_.model->sleep_ms = 300;
  pb::InspectReply reply;
  const auto start = Clock::now();
  ASSERT_TRUE(Inspect(Product(0, 0), &reply, 50).ok());
  const double waited = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_DEADLINE_EXCEEDED);
  EXPECT_EQ(reply.patches_size(), 0);
  EXPECT_LT(waited, 250.0);  // answered at the deadline, not when inference finished
}

// A new version swapped in while a request runs: that request finishes on the version it started with
// (its scores are that version's), and the next request is decided by the new version.
TEST(ModelSwapTest, RequestInFlightFinishesOnItsVersionDuringASwap) {
  const std::string root = testing::TempDir("svc_swap_in_flight");
  testing::MakeDir(root + "/vials");
  testing::MakeDir(root + "/vials/1");
  testing::WriteFile(root + "/vials/1/tfad_manifest.json", testing::ManifestJson("vials", 1));
  testing::FakeLoader loader;
  loader.model_per_version = true;  // score = mean pixel / 255 + version / 100
  std::unique_ptr<ModelManager> manager;
  ASSERT_TRUE(ModelManager::Create(root, {}, &loader, LoadOptions{1}, &manager).ok());
  manager->PollAll();
  ASSERT_TRUE(manager->AllServing());
  InferencePool pool(1, 2);
  InspectionServiceImpl service(manager.get(), &pool, ServiceOptions{});
  auto inspect = [&](pb::InspectReply* reply) {
    pb::InspectRequest r;
    r.set_product_id("P1");
    AddRawPatch(&r, "R0", 8, 8, 1, 51, 0);  // 0.2 + version / 100 <= 0.5: ACCEPT on either version
    const auto now = Clock::now();
    return service.InspectUntil(now, now + std::chrono::seconds(30), r, reply);
  };

  const std::shared_ptr<testing::FakeModel> v1 = loader.loaded.at(1);
  v1->hold = true;
  pb::InspectReply in_flight;
  grpc::Status in_flight_status;
  std::thread request([&] { in_flight_status = inspect(&in_flight); });
  while (v1->held == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // running on v1

  testing::MakeDir(root + "/vials/2");
  testing::WriteFile(root + "/vials/2/tfad_manifest.json", testing::ManifestJson("vials", 2));
  manager->PollAll();  // loads, warms up and swaps in v2 while the request is held inside v1
  ASSERT_EQ(manager->Find("vials")->Current()->version, 2);
  v1->hold = false;
  request.join();

  ASSERT_TRUE(in_flight_status.ok()) << in_flight_status.error_message();
  EXPECT_EQ(in_flight.verdict(), pb::VERDICT_ACCEPT);
  EXPECT_EQ(in_flight.model_version(), 1);
  EXPECT_NEAR(in_flight.patches(0).score(), 0.2f + 0.01f, 1e-6);
  pb::InspectReply next;
  ASSERT_TRUE(inspect(&next).ok());
  EXPECT_EQ(next.model_version(), 2);
  EXPECT_NEAR(next.patches(0).score(), 0.2f + 0.02f, 1e-6);
}

TEST_F(InspectionServiceTest, InferenceErrorIsRejectIncomplete) {
  loader_.model->fail = true;
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(Product(0, 0), &reply).ok());
  EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_INFERENCE_ERROR);
  EXPECT_NE(reply.incomplete_detail().find("fake failure"), std::string::npos);
}

// An exception thrown on the inference thread (std::bad_alloc from the TensorFlow client, anything else)
// ends the job in a REJECT_INCOMPLETE reply, never ACCEPT, and the pool's one thread serves the next request.
class InferenceExceptionTest : public InspectionServiceTest,
                               public ::testing::WithParamInterface<testing::FakeThrow> {};

TEST_P(InferenceExceptionTest, IsRejectIncompleteAndThePoolKeepsServing) {
  loader_.model->throws = GetParam();
  for (int attempt = 0; attempt < 2; ++attempt) {  // the same (only) pool thread throws twice
    pb::InspectReply reply;
    const auto start = Clock::now();
    ASSERT_TRUE(Inspect(Product(102, 51), &reply, 5000).ok());  // would ACCEPT if inference succeeded
    const double waited = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
    EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_INFERENCE_ERROR);
    EXPECT_NE(reply.incomplete_detail().find("inference threw"), std::string::npos) << reply.incomplete_detail();
    EXPECT_EQ(reply.patches_size(), 0);
    EXPECT_LT(waited, 2500.0);  // answered when the job failed, not at the deadline
  }
  loader_.model->throws = testing::FakeThrow::kNone;
  pb::InspectReply next;
  ASSERT_TRUE(Inspect(Product(102, 51), &next, 5000).ok());
  EXPECT_EQ(next.verdict(), pb::VERDICT_ACCEPT);
  pb::GetModelStatusRequest request;
  pb::GetModelStatusReply status;
  ASSERT_TRUE(service_->GetModelStatus(nullptr, &request, &status).ok());
  EXPECT_EQ(status.models(0).stats().rejected_incomplete(), 2u);
  EXPECT_EQ(status.models(0).stats().accepted(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Throws, InferenceExceptionTest,
                         ::testing::Values(testing::FakeThrow::kBadAlloc, testing::FakeThrow::kRuntimeError,
                                           testing::FakeThrow::kNonStd),
                         [](const ::testing::TestParamInfo<testing::FakeThrow>& info) {
                           switch (info.param) {
                             case testing::FakeThrow::kBadAlloc: return std::string("BadAlloc");
                             case testing::FakeThrow::kRuntimeError: return std::string("RuntimeError");
                             case testing::FakeThrow::kNonStd: return std::string("NonStdException");
                             default: return std::string("None");
                           }
                         });

TEST_F(InspectionServiceTest, NanScoresAreRejectIncomplete) {
  loader_.model->nan_scores = true;
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(Product(0, 0), &reply).ok());
  EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_INFERENCE_ERROR);
}

// A blank patch (every pixel one value: a camera or grab failure) is not scored when the manifest says so (what
// tfad export writes): a reconstruction model may reconstruct it perfectly and accept it.
TEST_F(InspectionServiceTest, BlankPatchIsRejectIncompleteWhenTheManifestSaysSo) {
  pb::InspectRequest uniform = Product(102, 51);  // every patch one value: scored under version 1's manifest
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(uniform, &reply).ok());
  EXPECT_EQ(reply.verdict(), pb::VERDICT_ACCEPT);
  testing::MakeDir(root_ + "/vials/2");
  testing::WriteFile(root_ + "/vials/2/tfad_manifest.json",
                     testing::ManifestJson("vials", 2, 8, 8, 1, "reject",
                                           R"({"policy": "max-accuracy", "regions": {"R0": 0.5, "R1": 0.25}})", "reject"));
  manager_->PollAll();
  const int runs_before = loader_.model->runs;
  ASSERT_TRUE(Inspect(uniform, &reply).ok());
  EXPECT_EQ(reply.model_version(), 2);
  EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_BLANK_PATCH);
  EXPECT_EQ(reply.incomplete_detail(),
            "patch 0 (region R0, frame 0, vial 0) is blank: every pixel is 102 (a camera or grab failure?); 2 blank "
            "patches in all");
  EXPECT_EQ(reply.patches_size(), 0);
  EXPECT_EQ(loader_.model->runs, runs_before);  // not run
  // one pixel of difference in each patch is an image: inspected as usual
  pb::InspectRequest varied = uniform;
  for (int i = 0; i < varied.patches_size(); ++i) (*varied.mutable_patches(i)->mutable_data())[5] = 0;
  ASSERT_TRUE(Inspect(varied, &reply).ok());
  EXPECT_EQ(reply.verdict(), pb::VERDICT_ACCEPT);
  EXPECT_EQ(reply.patches_size(), 2);
  // one blank patch among images is enough, and the detail names it
  (*varied.mutable_patches(1)->mutable_data())[5] = 51;
  ASSERT_TRUE(Inspect(varied, &reply).ok());
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_BLANK_PATCH);
  EXPECT_EQ(reply.incomplete_detail(),
            "patch 1 (region R1, frame 0, vial 0) is blank: every pixel is 51 (a camera or grab failure?)");
}

// A model whose heatmap output is shorter than the patches need is an inference error: the PNG encoder would
// read past the buffer.
TEST_F(InspectionServiceTest, ShortHeatmapOutputIsRejectIncompleteNotAnOutOfBoundsRead) {
  loader_.model->short_heatmaps = 1;
  pb::InspectRequest request = Product(0, 0);
  request.set_heatmaps(pb::HEATMAP_MODE_ALL);
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(request, &reply).ok());
  EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_INFERENCE_ERROR);
  EXPECT_NE(reply.incomplete_detail().find("heatmap values for"), std::string::npos) << reply.incomplete_detail();
  EXPECT_EQ(reply.patches_size(), 0);
  // the same model without heatmaps asked for answers normally
  request.set_heatmaps(pb::HEATMAP_MODE_NONE);
  ASSERT_TRUE(Inspect(request, &reply).ok());
  EXPECT_NE(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
}

TEST_F(InspectionServiceTest, FullQueueIsRejectIncompleteOverloaded) {
  loader_.model->sleep_ms = 500;
  // One running + two queued fill the pool (1 thread, max_queue 2); the fourth is refused. Each step waits
  // for the pool's state rather than for a fixed time: a request submitted before the thread has taken the
  // first one would itself be refused (seen once in CI with a 50 ms sleep).
  auto wait_until = [](const std::function<bool()>& done) {
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    while (!done() && Clock::now() < give_up) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return done();
  };
  std::vector<std::thread> threads;
  auto send = [this, &threads] {
    threads.emplace_back([this] {
      pb::InspectReply reply;
      Inspect(Product(0, 0), &reply, 20000);
    });
  };
  const int runs_before = loader_.model->runs;  // the warm-up at load ran the model (twice)
  send();
  const bool running = wait_until([&] { return loader_.model->runs == runs_before + 1; });
  send();
  send();
  const bool queued = running && wait_until([this] { return pool_->queued() == 2; });
  pb::InspectReply reply;
  const grpc::Status status = Inspect(Product(0, 0), &reply, 20000);
  for (auto& t : threads) t.join();  // before any ASSERT returns: a joinable thread would abort the binary
  ASSERT_TRUE(running) << "the pool's thread never took the first request";
  ASSERT_TRUE(queued) << "two requests were not queued behind the running one";
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_OVERLOADED);
}

TEST_F(InspectionServiceTest, ModelStatusReportsVersionsAndStats) {
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(Product(102, 51), &reply).ok());
  pb::GetModelStatusRequest request;
  pb::GetModelStatusReply status;
  ASSERT_TRUE(service_->GetModelStatus(nullptr, &request, &status).ok());
  ASSERT_EQ(status.models_size(), 1);
  EXPECT_EQ(status.server_kind(), "cc");
  EXPECT_EQ(status.models(0).serving_version(), 1);
  EXPECT_EQ(status.models(0).versions(0).state(), pb::VERSION_STATE_AVAILABLE);
  EXPECT_EQ(status.models(0).stats().accepted(), 1u);
  request.set_model_name("nope");
  EXPECT_EQ(service_->GetModelStatus(nullptr, &request, &status).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Over-long or binary ids are refused before anything echoes or logs them (issue 14 item 5).
TEST_F(InspectionServiceTest, OverlongIdIsInvalidArgumentAndNeverEchoed) {
  const int runs = loader_.model->runs;
  for (const std::string& id : {std::string(4096, 'X'), std::string("P1\x1b[2J")}) {
    pb::InspectRequest r = Product(102, 51);
    r.set_product_id(id);
    r.set_run_id(id);
    pb::InspectReply reply;
    const grpc::Status s = Inspect(r, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(s.error_message().rfind("product_id ", 0), 0u) << s.error_message();
    EXPECT_EQ(s.error_message().find(id), std::string::npos);
    EXPECT_TRUE(reply.product_id().empty());
    EXPECT_TRUE(reply.run_id().empty());
  }
  pb::InspectRequest r = Product(102, 51);
  r.set_station_id(std::string(129, 's'));
  pb::InspectReply reply;
  const grpc::Status s = Inspect(r, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "station_id is 129 bytes; at most 128 allowed");
  EXPECT_EQ(loader_.model->runs, runs);
  pb::GetModelStatusRequest request;
  pb::GetModelStatusReply status;
  ASSERT_TRUE(service_->GetModelStatus(nullptr, &request, &status).ok());
  EXPECT_EQ(status.models(0).stats().invalid(), 3u);
}

TEST_F(InspectionServiceTest, UnknownHeatmapModeIsInvalidArgumentBeforeInference) {
  pb::InspectRequest r = Product(102, 77);
  r.set_heatmaps(static_cast<pb::HeatmapMode>(3));
  const int runs = loader_.model->runs;
  pb::InspectReply reply;
  const grpc::Status s = Inspect(r, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("heatmaps: unknown HeatmapMode value 3"), std::string::npos) << s.error_message();
  EXPECT_EQ(loader_.model->runs, runs);
}

}  // namespace
}  // namespace tfad
