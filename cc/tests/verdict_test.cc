#include "cc/verdict.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace tfad {
namespace {

TEST(VerdictTest, AcceptsWhenEveryScoreIsAtOrBelowItsThreshold) {
  const VerdictResult r = DecideProduct({0.1f, 0.2f, 0.3f}, {0.5f, 0.2f, 0.4f});
  EXPECT_EQ(r.verdict, ProductVerdict::kAccept);
  EXPECT_FLOAT_EQ(r.product_score, 0.3f);
  EXPECT_EQ(r.patch_rejected, (std::vector<bool>{false, false, false}));
}

TEST(VerdictTest, RejectsWhenAnyScoreExceedsItsRegionThreshold) {
  // Patch 1 has the lowest score but the strictest region threshold.
  const VerdictResult r = DecideProduct({0.4f, 0.2f, 0.3f}, {0.5f, 0.1f, 0.4f});
  EXPECT_EQ(r.verdict, ProductVerdict::kReject);
  EXPECT_FLOAT_EQ(r.product_score, 0.4f);
  EXPECT_EQ(r.patch_rejected, (std::vector<bool>{false, true, false}));
}

TEST(VerdictTest, NanScoreIsIncompleteNeverAccept) {
  const VerdictResult r = DecideProduct({0.1f, std::nanf("")}, {0.5f, 0.5f});
  EXPECT_EQ(r.verdict, ProductVerdict::kRejectIncomplete);
  EXPECT_NE(r.error.find("patch 1"), std::string::npos) << r.error;
}

TEST(VerdictTest, InfiniteScoreIsIncomplete) {
  EXPECT_EQ(DecideProduct({std::numeric_limits<float>::infinity()}, {0.5f}).verdict, ProductVerdict::kRejectIncomplete);
  EXPECT_EQ(DecideProduct({-std::numeric_limits<float>::infinity()}, {0.5f}).verdict, ProductVerdict::kRejectIncomplete);
}

TEST(VerdictTest, LengthMismatchOrEmptyIsIncomplete) {
  EXPECT_EQ(DecideProduct({0.1f}, {0.5f, 0.5f}).verdict, ProductVerdict::kRejectIncomplete);
  EXPECT_EQ(DecideProduct({}, {}).verdict, ProductVerdict::kRejectIncomplete);
}

}  // namespace
}  // namespace tfad
