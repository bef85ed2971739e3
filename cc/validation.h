// Request validation and decoding: everything that must hold before a request may touch TensorFlow.
#ifndef TFAD_CC_VALIDATION_H_
#define TFAD_CC_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc/manifest.h"
#include "cc/status.h"
#include "tfad/inspection/v1/inspection.pb.h"

namespace tfad {

struct RequestLimits {
  int max_patches = 256;
  int64_t max_patch_bytes = 4 << 20;        // encoded bytes of one patch
  int64_t max_image_pixels = 4096 * 4096;   // width*height of one patch before resizing
};

// A validated product ready for the model: uint8 [n, H, W, C] in request order, plus the threshold
// that applies to each patch.
struct DecodedBatch {
  int n = 0, height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
  std::vector<float> thresholds;
  int resized = 0;  // patches that were resized (bilinear policy)
};

// Validates `request` against `limits` and the serving model's `manifest`, decoding PNGs and resizing
// when the manifest allows it. On failure returns an error naming the first problem (patch index and
// region included); `batch` is then unspecified.
Status ValidateAndDecode(const tfad::inspection::v1::InspectRequest& request, const Manifest& manifest,
                         const RequestLimits& limits, DecodedBatch* batch);

}  // namespace tfad

#endif  // TFAD_CC_VALIDATION_H_
