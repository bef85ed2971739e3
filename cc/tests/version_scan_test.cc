#include "cc/version_scan.h"

#include <gtest/gtest.h>

#include <thread>

#include "cc/tests/test_util.h"

namespace tfad {
namespace {

TEST(VersionScanTest, VersionNames) {
  EXPECT_TRUE(IsVersionName("1"));
  EXPECT_TRUE(IsVersionName("20"));
  EXPECT_FALSE(IsVersionName("0"));
  EXPECT_FALSE(IsVersionName("01"));
  EXPECT_FALSE(IsVersionName("-1"));
  EXPECT_FALSE(IsVersionName("1.partial"));
  EXPECT_FALSE(IsVersionName(".2"));
  EXPECT_FALSE(IsVersionName(""));
  EXPECT_FALSE(IsVersionName("tmp"));
}

TEST(VersionScanTest, ListsNumericDirectoriesHighestFirst) {
  const std::string base = testing::TempDir("scan");
  for (const char* name : {"1", "10", "2", "tmp", ".3.tmp", "007"}) testing::MakeDir(base + "/" + name);
  testing::WriteFile(base + "/5", "a file, not a directory");
  std::vector<VersionDir> versions;
  ASSERT_TRUE(ScanVersions(base, &versions).ok());
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[0].version, 10);
  EXPECT_EQ(versions[1].version, 2);
  EXPECT_EQ(versions[2].version, 1);
  EXPECT_EQ(versions[2].path, base + "/1");
}

TEST(VersionScanTest, FingerprintChangesWhenFilesChange) {
  const std::string base = testing::TempDir("fingerprint");
  testing::MakeDir(base + "/1");
  std::vector<VersionDir> before, after;
  ASSERT_TRUE(ScanVersions(base, &before).ok());
  testing::WriteFile(base + "/1/saved_model.pb", "bytes");
  ASSERT_TRUE(ScanVersions(base, &after).ok());
  EXPECT_NE(before[0].fingerprint, after[0].fingerprint);
}

TEST(VersionScanTest, MissingBasePathIsAnError) {
  std::vector<VersionDir> versions;
  Status s = ScanVersions("/nonexistent/models/x", &versions);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/models/x"), std::string::npos);
}

TEST(VersionScanTest, ModelNamesAreDirectoriesWithVersions) {
  const std::string root = testing::TempDir("root");
  testing::MakeDir(root + "/vials");
  testing::MakeDir(root + "/vials/1");
  testing::MakeDir(root + "/empty");
  testing::MakeDir(root + "/.hidden");
  testing::MakeDir(root + "/.hidden/1");
  std::vector<std::string> names;
  ASSERT_TRUE(ScanModelNames(root, &names).ok());
  EXPECT_EQ(names, std::vector<std::string>{"vials"});
}

}  // namespace
}  // namespace tfad
