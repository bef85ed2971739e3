// Scanning a model's base path for numbered version directories (savedmodels/<name>/<version>/).
#ifndef TFAD_CC_VERSION_SCAN_H_
#define TFAD_CC_VERSION_SCAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc/status.h"

namespace tfad {

struct VersionDir {
  int64_t version = 0;
  std::string path;
  // Changes whenever the directory's content is replaced or still being written (mtimes and sizes of
  // the directory, saved_model.pb, the manifest and variables/); a failed version is retried only when
  // its fingerprint changes.
  std::string fingerprint;
};

// True for a positive decimal integer without sign, leading zeros or other characters ("1", "20").
bool IsVersionName(const std::string& name);

// Lists the version directories under base_path, highest version first. Entries that are not version
// names (e.g. "tmp", "1.partial", ".2") are ignored. Errors only when base_path cannot be read.
Status ScanVersions(const std::string& base_path, std::vector<VersionDir>* versions);

// Lists model names under models_root: subdirectories holding at least one version directory.
Status ScanModelNames(const std::string& models_root, std::vector<std::string>* names);

}  // namespace tfad

#endif  // TFAD_CC_VERSION_SCAN_H_
