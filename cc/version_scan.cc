#include "cc/version_scan.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tfad {
namespace {

std::string StatPart(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "-";
  return std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ":" +
         std::to_string(st.st_size);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status ListDir(const std::string& path, std::vector<std::string>* names) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return Status::Error("cannot read directory " + path + ": " + std::strerror(errno));
  while (const dirent* entry = ::readdir(dir)) names->emplace_back(entry->d_name);
  ::closedir(dir);
  return Status::Ok();
}

}  // namespace

bool IsVersionName(const std::string& name) {
  if (name.empty() || name.size() > 18 || name[0] == '0') return false;
  return std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

Status ScanVersions(const std::string& base_path, std::vector<VersionDir>* versions) {
  versions->clear();
  std::vector<std::string> names;
  Status s = ListDir(base_path, &names);
  if (!s.ok()) return s;
  for (const std::string& name : names) {
    if (!IsVersionName(name)) continue;
    const std::string path = base_path + "/" + name;
    if (!IsDirectory(path)) continue;
    VersionDir v;
    v.version = std::stoll(name);
    v.path = path;
    v.fingerprint = StatPart(path) + "|" + StatPart(path + "/saved_model.pb") + "|" +
                    StatPart(path + "/tfad_manifest.json") + "|" + StatPart(path + "/variables") + "|" +
                    StatPart(path + "/variables/variables.index");
    versions->push_back(std::move(v));
  }
  std::sort(versions->begin(), versions->end(),
            [](const VersionDir& a, const VersionDir& b) { return a.version > b.version; });
  return Status::Ok();
}

Status ScanModelNames(const std::string& models_root, std::vector<std::string>* names) {
  names->clear();
  std::vector<std::string> entries;
  Status s = ListDir(models_root, &entries);
  if (!s.ok()) return s;
  std::sort(entries.begin(), entries.end());
  for (const std::string& entry : entries) {
    if (entry.empty() || entry[0] == '.') continue;
    const std::string path = models_root + "/" + entry;
    if (!IsDirectory(path)) continue;
    std::vector<VersionDir> versions;
    if (ScanVersions(path, &versions).ok() && !versions.empty()) names->push_back(entry);
  }
  return Status::Ok();
}

}  // namespace tfad
