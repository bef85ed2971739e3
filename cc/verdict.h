// Patch decisions and the product verdict (architecture.md: a patch is rejected when score > threshold).
#ifndef TFAD_CC_VERDICT_H_
#define TFAD_CC_VERDICT_H_

#include <string>
#include <vector>

namespace tfad {

enum class ProductVerdict { kAccept, kReject, kRejectIncomplete };

struct VerdictResult {
  ProductVerdict verdict = ProductVerdict::kRejectIncomplete;
  float product_score = 0.0f;             // max patch score
  std::vector<bool> patch_rejected;       // per patch: score > threshold
  std::string error;                      // set when incomplete (e.g. non-finite score)
};

// Decides a product from its patch scores and thresholds (same length). Fail-safe: a non-finite score
// (NaN would compare false against any threshold and so "accept") or a length mismatch makes the result
// REJECT_INCOMPLETE with `error` set; ACCEPT only when every score is finite and <= its threshold.
VerdictResult DecideProduct(const std::vector<float>& scores, const std::vector<float>& thresholds);

}  // namespace tfad

#endif  // TFAD_CC_VERDICT_H_
