#include "cc/verdict.h"

#include <cmath>

namespace tfad {

VerdictResult DecideProduct(const std::vector<float>& scores, const std::vector<float>& thresholds) {
  VerdictResult r;
  if (scores.empty() || scores.size() != thresholds.size()) {
    r.error = "internal: " + std::to_string(scores.size()) + " scores for " + std::to_string(thresholds.size()) +
              " patches";
    return r;
  }
  r.patch_rejected.assign(scores.size(), false);
  bool any_rejected = false;
  float max_score = -INFINITY;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i]) || !std::isfinite(thresholds[i])) {
      r.error = "non-finite score " + std::to_string(scores[i]) + " for patch " + std::to_string(i);
      r.patch_rejected.clear();
      return r;
    }
    const bool rejected = scores[i] > thresholds[i];
    r.patch_rejected[i] = rejected;
    any_rejected |= rejected;
    if (scores[i] > max_score) max_score = scores[i];
  }
  r.product_score = max_score;
  r.verdict = any_rejected ? ProductVerdict::kReject : ProductVerdict::kAccept;
  return r;
}

}  // namespace tfad
