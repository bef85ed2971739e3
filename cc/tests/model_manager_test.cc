#include "cc/model_manager.h"

#include <gtest/gtest.h>

#include <utility>

#include "cc/tests/fake_model.h"
#include "cc/tests/test_util.h"

namespace tfad {
namespace {

using testing::FakeLoader;

class ModelManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::TempDir("models_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    testing::MakeDir(root_ + "/vials");
    LoadOptions options;
    options.warmup_batch = 2;
    slot_ = std::make_unique<ModelSlot>("vials", root_ + "/vials", &loader_, options);
  }
  void AddVersion(int v, const std::string& manifest = "") {
    const std::string dir = root_ + "/vials/" + std::to_string(v);
    testing::MakeDir(dir);
    testing::WriteFile(dir + "/tfad_manifest.json", manifest.empty() ? testing::ManifestJson("vials", v) : manifest);
  }
  VersionRecord Record(int64_t v) {
    for (const auto& r : slot_->Versions()) {
      if (r.version == v) return r;
    }
    return {};
  }

  std::string root_;
  FakeLoader loader_;
  std::unique_ptr<ModelSlot> slot_;
};

TEST_F(ModelManagerTest, ServesTheHighestVersionAndWarmsItUp) {
  AddVersion(1);
  AddVersion(3);
  slot_->Poll();
  ASSERT_NE(slot_->Current(), nullptr);
  EXPECT_EQ(slot_->Current()->version, 3);
  EXPECT_EQ(loader_.loads, 1);
  EXPECT_EQ(loader_.model->runs, 2);  // the warm-up: with heatmaps, and without (the score-only path)
  EXPECT_EQ(loader_.model->runs_without_heatmaps, 1);
  EXPECT_EQ(Record(3).state, VersionState::kAvailable);
}

TEST_F(ModelManagerTest, NewVersionIsSwappedInAndTheOldRetired) {
  AddVersion(1);
  slot_->Poll();
  AddVersion(2);
  slot_->Poll();
  EXPECT_EQ(slot_->Current()->version, 2);
  EXPECT_EQ(Record(1).state, VersionState::kRetired);
  // A request in flight on v1 finishing on v1 is tested through the service
  // (InspectionServiceTest.RequestInFlightFinishesOnItsVersionDuringASwap).
}

// An exception out of the loader (std::bad_alloc from the TensorFlow client, anything else) or out of the
// warm-up run is that version's load error; the poller survives and the previous version keeps serving.
TEST_F(ModelManagerTest, LoadThatThrowsIsALoadErrorAndThePreviousKeepsServing) {
  AddVersion(1);
  slot_->Poll();
  ASSERT_EQ(slot_->Current()->version, 1);
  const std::pair<testing::FakeThrow, const char*> cases[] = {
      {testing::FakeThrow::kBadAlloc, "std::bad_alloc"},
      {testing::FakeThrow::kRuntimeError, "fake load exception"},
      {testing::FakeThrow::kNonStd, "non-standard exception"},
  };
  int version = 2;
  for (const auto& [kind, message] : cases) {
    loader_.throws = kind;
    AddVersion(version);
    slot_->Poll();  // must not throw
    EXPECT_EQ(slot_->Current()->version, 1);
    EXPECT_EQ(Record(version).state, VersionState::kFailed);
    EXPECT_NE(Record(version).error.find(message), std::string::npos) << Record(version).error;
    ++version;
  }
  loader_.throws = testing::FakeThrow::kNone;
  loader_.model->throws = testing::FakeThrow::kBadAlloc;  // the warm-up run throws
  AddVersion(version);
  slot_->Poll();
  EXPECT_EQ(slot_->Current()->version, 1);
  EXPECT_NE(Record(version).error.find("std::bad_alloc"), std::string::npos) << Record(version).error;
}

TEST_F(ModelManagerTest, PollAllSurvivesAThrowingLoad) {
  AddVersion(1);
  std::unique_ptr<ModelManager> manager;
  ASSERT_TRUE(ModelManager::Create(root_, {}, &loader_, LoadOptions{2}, &manager).ok());
  loader_.throws = testing::FakeThrow::kNonStd;
  manager->PollAll();  // must not throw
  EXPECT_FALSE(manager->AllServing());
  loader_.throws = testing::FakeThrow::kNone;
  testing::WriteFile(root_ + "/vials/1/saved_model.pb", "changed");  // a failed version is retried on change
  manager->PollAll();
  EXPECT_TRUE(manager->AllServing());
}

TEST_F(ModelManagerTest, FailedVersionIsReportedAndThePreviousKeepsServing) {
  AddVersion(1);
  slot_->Poll();
  AddVersion(2);
  testing::WriteFile(root_ + "/vials/2/broken", "");
  slot_->Poll();
  EXPECT_EQ(slot_->Current()->version, 1);
  EXPECT_EQ(Record(2).state, VersionState::kFailed);
  EXPECT_NE(Record(2).error.find("fake broken"), std::string::npos);
  // Not retried while unchanged...
  const int loads = loader_.loads;
  slot_->Poll();
  EXPECT_EQ(loader_.loads, loads);
}

TEST_F(ModelManagerTest, FailedVersionIsRetriedWhenItsFilesChange) {
  AddVersion(1);
  testing::WriteFile(root_ + "/vials/1/broken", "");
  slot_->Poll();
  EXPECT_EQ(slot_->Current(), nullptr);
  std::remove((root_ + "/vials/1/broken").c_str());
  testing::WriteFile(root_ + "/vials/1/saved_model.pb", "now complete");
  slot_->Poll();
  ASSERT_NE(slot_->Current(), nullptr);
  EXPECT_EQ(slot_->Current()->version, 1);
}

TEST_F(ModelManagerTest, ManifestWithoutThresholdsIsALoadError) {
  AddVersion(1);
  AddVersion(2, testing::ManifestJson("vials", 2, 8, 8, 1, "reject", "null"));
  slot_->Poll();
  EXPECT_EQ(slot_->Current()->version, 1);  // falls back to the best loadable version
  EXPECT_EQ(Record(2).state, VersionState::kFailed);
  EXPECT_NE(Record(2).error.find("no thresholds"), std::string::npos) << Record(2).error;
}

TEST_F(ModelManagerTest, ManifestMustDescribeItsDirectory) {
  AddVersion(4, testing::ManifestJson("vials", 5));
  slot_->Poll();
  EXPECT_EQ(slot_->Current(), nullptr);
  EXPECT_NE(Record(4).error.find("manifest says version 5"), std::string::npos) << Record(4).error;
}

TEST_F(ModelManagerTest, WarmUpWithNonFiniteScoresIsALoadError) {
  loader_.model->nan_scores = true;
  AddVersion(1);
  slot_->Poll();
  EXPECT_EQ(slot_->Current(), nullptr);
  EXPECT_NE(Record(1).error.find("non-finite"), std::string::npos);
}

// A version whose run without heatmaps (its score-only signature) scores otherwise than its full run would
// make a verdict depend on the heatmap mode: refused at load, the previous version keeps serving.
TEST_F(ModelManagerTest, ScoreOnlyPathThatDisagreesIsALoadError) {
  AddVersion(1);
  slot_->Poll();
  ASSERT_NE(slot_->Current(), nullptr);
  loader_.model->score_only_offset = 1e-3f;
  AddVersion(2);
  slot_->Poll();
  EXPECT_EQ(slot_->Current()->version, 1);
  EXPECT_NE(Record(2).error.find("score-only signature's warm-up score differs"), std::string::npos)
      << Record(2).error;
  loader_.model->score_only_offset = 1e-6f;  // within the stated tolerance (float rounding)
  AddVersion(3);
  slot_->Poll();
  EXPECT_EQ(slot_->Current()->version, 3);
}

TEST_F(ModelManagerTest, RemovingTheServingVersionRollsBack) {
  AddVersion(1);
  AddVersion(2);
  slot_->Poll();
  ASSERT_EQ(slot_->Current()->version, 2);
  ASSERT_EQ(std::system(("rm -rf '" + root_ + "/vials/2'").c_str()), 0);
  slot_->Poll();
  EXPECT_EQ(slot_->Current()->version, 1);
}

TEST_F(ModelManagerTest, ManagerFindsModelsAndDefault) {
  AddVersion(1);
  std::unique_ptr<ModelManager> manager;
  ASSERT_TRUE(ModelManager::Create(root_, {}, &loader_, LoadOptions{2}, &manager).ok());
  EXPECT_FALSE(manager->AllServing());
  manager->PollAll();
  EXPECT_TRUE(manager->AllServing());
  EXPECT_EQ(manager->Find("")->name(), "vials");
  EXPECT_EQ(manager->Find("other"), nullptr);
  std::unique_ptr<ModelManager> none;
  EXPECT_FALSE(ModelManager::Create(root_ + "/vials/1", {}, &loader_, LoadOptions{}, &none).ok());
}

}  // namespace
}  // namespace tfad
