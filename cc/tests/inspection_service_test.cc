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

// A patch of 8x8 values alternating value - amplitude and value + amplitude: mean `value`, std `amplitude`.
pb::Patch* AddNoisyPatch(pb::InspectRequest* r, const std::string& region, int value, int amplitude,
                         uint32_t vial = 0) {
  pb::Patch* p = AddRawPatch(r, region, 8, 8, 1, 0, vial);
  std::string& data = *p->mutable_data();
  for (int k = 0; k < 64; ++k) data[k] = static_cast<char>(k % 2 ? value + amplitude : value - amplitude);
  return p;
}

class AcquisitionCheckTest : public InspectionServiceTest {
 protected:
  // Serves `version` of "vials" with the thresholds of version 1 and this acquisition_check block.
  void Serve(int version, const std::string& check = testing::kAcquisitionCheckJson, const std::string& blank = "") {
    const std::string dir = root_ + "/vials/" + std::to_string(version);
    testing::MakeDir(dir);
    const std::string thresholds = R"({"policy": "max-accuracy", "regions": {"R0": 0.5, "R1": 0.25}})";
    testing::WriteFile(dir + "/tfad_manifest.json",
                       testing::WithAcquisitionCheck(
                           testing::ManifestJson("vials", version, 8, 8, 1, "reject", thresholds, blank), check));
    manager_->PollAll();
    ASSERT_EQ(manager_->Find("vials")->Current()->version, version);
  }
  // Inspects `r` expecting REJECT_INCOMPLETE / ACQUISITION_CHECK without running the model; returns the detail.
  std::string Failed(const pb::InspectRequest& r) {
    pb::InspectReply reply;
    const int runs = loader_.model->runs;
    const grpc::Status s = Inspect(r, &reply);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
    EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_ACQUISITION_CHECK) << reply.incomplete_detail();
    EXPECT_EQ(reply.patches_size(), 0);
    EXPECT_EQ(loader_.model->runs, runs);  // not run
    return reply.incomplete_detail();
  }
  static pb::InspectRequest Product(int r0_mean, int r0_std, int r1_mean, int r1_std) {
    pb::InspectRequest r;
    r.set_product_id("P1");
    AddNoisyPatch(&r, "R0", r0_mean, r0_std, 0);
    AddNoisyPatch(&r, "R1", r1_mean, r1_std, 1);
    return r;
  }
};

// A lamp failure (a dark noisy frame) is not scored when the manifest has the check; a manifest without it (older
// exports) scores the same product as before. R0's limits: mean 80.3-230.7, std >= 13.
TEST_F(AcquisitionCheckTest, DarkPatchIsRejectIncompleteNotScored) {
  const pb::InspectRequest dark = Product(4, 2, 51, 10);
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(dark, &reply).ok());  // version 1: no acquisition_check
  EXPECT_EQ(reply.verdict(), pb::VERDICT_ACCEPT);
  Serve(2);
  EXPECT_EQ(Failed(dark),
            "patch 0 (region R0, frame 0, vial 0) fails the acquisition check: mean gray 4.0 is below 80.3 (a lamp, "
            "exposure, focus or grab failure?)");
}

// A saturated sensor (near-white noise); %.1f rounds as Python's :.1f (250.25 -> 250.2).
TEST_F(AcquisitionCheckTest, BrightPatchIsAbove) {
  Serve(2);
  pb::InspectRequest bright = Product(150, 20, 51, 10);
  std::string& data = *bright.mutable_patches(1)->mutable_data();
  for (int k = 0; k < 64; ++k) data[k] = static_cast<char>(k < 16 ? 248 : 251);  // mean 250.25, std 1.30
  EXPECT_EQ(Failed(bright),
            "patch 1 (region R1, frame 0, vial 1) fails the acquisition check: mean gray 250.2 is above 238.3 (a lamp, "
            "exposure, focus or grab failure?)");
}

// A covered or defocused lens (a flat gray frame, not uniform enough to be blank).
TEST_F(AcquisitionCheckTest, FlatPatchHasTooLittleContrast) {
  Serve(2);
  EXPECT_EQ(Failed(Product(128, 2, 51, 10)),
            "patch 0 (region R0, frame 0, vial 0) fails the acquisition check: pixel standard deviation 2.00 is below "
            "13.00 (a lamp, exposure, focus or grab failure?)");
}

// R1 is not listed: the default's limits apply (std >= 4.77, mean >= 24.5), not R0's.
TEST_F(AcquisitionCheckTest, UnlistedRegionUsesTheDefault) {
  Serve(2);
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(Product(102, 20, 51, 6), &reply).ok());  // std 6 would fail R0's 13
  EXPECT_EQ(reply.verdict(), pb::VERDICT_ACCEPT);
  EXPECT_EQ(Failed(Product(102, 20, 51, 4)),
            "patch 1 (region R1, frame 0, vial 1) fails the acquisition check: pixel standard deviation 4.00 is below "
            "4.77 (a lamp, exposure, focus or grab failure?)");
  EXPECT_EQ(Failed(Product(102, 20, 20, 10)),
            "patch 1 (region R1, frame 0, vial 1) fails the acquisition check: mean gray 20.0 is below 24.5 (a lamp, "
            "exposure, focus or grab failure?)");
}

// A product within the limits is scored and decided by the thresholds as before.
TEST_F(AcquisitionCheckTest, PassingProductIsScoredAsBefore) {
  Serve(2);
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(Product(102, 20, 51, 10), &reply).ok());  // scores 0.4 <= 0.5, 0.2 <= 0.25
  EXPECT_EQ(reply.verdict(), pb::VERDICT_ACCEPT);
  EXPECT_EQ(reply.model_version(), 2);
  ASSERT_EQ(reply.patches_size(), 2);
  EXPECT_NEAR(reply.product_score(), 0.4f, 1e-6);
  pb::InspectReply rejected;
  ASSERT_TRUE(Inspect(Product(102, 20, 77, 10), &rejected).ok());  // 77/255 = 0.302 > 0.25
  EXPECT_EQ(rejected.verdict(), pb::VERDICT_REJECT);
  ASSERT_EQ(rejected.patches_size(), 2);
  EXPECT_EQ(rejected.patches(1).decision(), pb::PATCH_DECISION_REJECT);
}

// The limits are inclusive: a patch fails only when mean < mean_min, mean > mean_max or std < std_min.
TEST_F(AcquisitionCheckTest, LimitsAreInclusive) {
  Serve(2, R"({"default": {"mean_min": 60, "mean_max": 200, "std_min": 10}})");
  pb::InspectReply accepted, rejected;
  ASSERT_TRUE(Inspect(Product(60, 10, 60, 10), &accepted).ok());  // R0 and R1: the default; mean 60 scores 0.235
  EXPECT_EQ(accepted.verdict(), pb::VERDICT_ACCEPT) << accepted.incomplete_detail();
  ASSERT_TRUE(Inspect(Product(60, 10, 200, 10), &rejected).ok());
  EXPECT_EQ(rejected.verdict(), pb::VERDICT_REJECT) << rejected.incomplete_detail();  // scored: 200/255 > 0.25
  EXPECT_NE(Failed(Product(59, 10, 60, 10)).find("mean gray 59.0 is below 60.0"), std::string::npos);
  EXPECT_NE(Failed(Product(60, 10, 201, 10)).find("mean gray 201.0 is above 200.0"), std::string::npos);
  EXPECT_NE(Failed(Product(60, 9, 60, 10)).find("pixel standard deviation 9.00 is below 10.00"), std::string::npos);
}

// The detail names the lowest failing patch, its first failing condition (mean before std), and the count.
TEST_F(AcquisitionCheckTest, DetailNamesTheFirstFailingPatchAndCountsThem) {
  Serve(2);
  pb::InspectRequest r;
  r.set_product_id("P1");
  AddNoisyPatch(&r, "R0", 120, 20, 0);  // passes
  AddNoisyPatch(&r, "R0", 240, 2, 1);   // above 230.7 and flat: the mean is named
  AddNoisyPatch(&r, "R1", 128, 2, 2);   // flat
  AddNoisyPatch(&r, "R1", 100, 10, 3);  // passes
  AddNoisyPatch(&r, "R0", 3, 1, 4);     // dark
  EXPECT_EQ(Failed(r),
            "patch 1 (region R0, frame 0, vial 1) fails the acquisition check: mean gray 240.0 is above 230.7 (a lamp, "
            "exposure, focus or grab failure?); 3 patches fail it in all");
}

// Both rules on: a blank product still answers BLANK_PATCH (checked first); with blank patches inspected, the
// check rejects a blank patch for its contrast.
TEST_F(AcquisitionCheckTest, BlankPatchRuleComesFirst) {
  Serve(2, testing::kAcquisitionCheckJson, "reject");
  pb::InspectRequest r = Product(102, 20, 51, 10);
  r.mutable_patches(1)->set_data(std::string(64, static_cast<char>(51)));
  pb::InspectReply reply;
  ASSERT_TRUE(Inspect(r, &reply).ok());
  EXPECT_EQ(reply.verdict(), pb::VERDICT_REJECT_INCOMPLETE);
  EXPECT_EQ(reply.incomplete_reason(), pb::INCOMPLETE_REASON_BLANK_PATCH);
  EXPECT_EQ(reply.incomplete_detail(),
            "patch 1 (region R1, frame 0, vial 1) is blank: every pixel is 51 (a camera or grab failure?)");
  Serve(3, testing::kAcquisitionCheckJson, "inspect");
  EXPECT_EQ(Failed(r),
            "patch 1 (region R1, frame 0, vial 1) fails the acquisition check: pixel standard deviation 0.00 is below "
            "4.77 (a lamp, exposure, focus or grab failure?)");
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
