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
  int64_t max_patch_bytes = 256 << 10;      // encoded bytes of one patch (4x the line's 256x256x1 raw patch)
  int64_t max_image_pixels = 4096 * 4096;   // width*height of one patch before resizing
};

// Longest product_id, run_id, station_id, model_name and patch region (bytes, printable ASCII only).
// Longer or non-printable values are refused without being echoed in the reply, the status or the log.
constexpr size_t kMaxIdBytes = 128;
// The "bilinear" resize policy resizes a patch whose width and height are each within this factor of the
// model's (inclusive). Bilinear without antialiasing skips source pixels when it shrinks more than 2x (a thin
// defect can fall between its taps), and a larger enlargement gives the model a blur it never saw: such a patch
// (a thumbnail, a mis-cut frame) is refused, never scored.
constexpr int kMaxResizeFactor = 2;

// Serialized bytes of one Patch beyond its data, at most: region (<= kMaxIdBytes + tag + length), the six
// varint fields and the enum (<= 11 bytes each), the data's tag and length prefix, the Patch's own prefix.
constexpr int64_t kPatchOverheadBytes = 256;
// Serialized bytes of an InspectRequest beyond its patches, at most: four ids of <= kMaxIdBytes + prefixes,
// the heatmap mode.
constexpr int64_t kRequestOverheadBytes = 4096;
// Margin of the default gRPC message limit over the largest legal request.
constexpr int64_t kMessageMarginBytes = 1 << 20;
// gRPC takes the message limit as an int.
constexpr int64_t kMaxMessageBytesCap = int64_t{2047} << 20;

// The largest serialized InspectRequest that can pass validation under `limits`:
// max_patches * (max_patch_bytes + kPatchOverheadBytes) + kRequestOverheadBytes.
int64_t LargestLegalRequestBytes(const RequestLimits& limits);

// The default gRPC message limit (--max_message_bytes=0): the largest legal request plus
// kMessageMarginBytes, rounded up to a whole MiB, at most kMaxMessageBytesCap. Defaults: 66 MiB.
int64_t DefaultMaxMessageBytes(const RequestLimits& limits);

// Checks the request's own fields before anything echoes or logs them: product_id, run_id, station_id and
// model_name at most kMaxIdBytes of printable ASCII; heatmaps one of the declared HeatmapMode values
// (proto3 keeps unknown enum numbers). The error names the field and the limit, never the value.
Status ValidateRequestFields(const tfad::inspection::v1::InspectRequest& request);

// A validated product ready for the model: uint8 [n, H, W, C] in request order, plus the threshold
// that applies to each patch.
struct DecodedBatch {
  int n = 0, height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
  std::vector<float> thresholds;
  int resized = 0;  // patches that were resized (bilinear policy)
  std::vector<int> blank;  // indices of the patches whose pixels (as the model gets them, every channel) are all equal
  // Mean gray and pixel standard deviation of each patch as the model gets it (all channels pooled), for the
  // manifest's acquisition_check (the service decides); empty when the manifest has no check.
  std::vector<double> pixel_mean, pixel_std;
};

// Mean and standard deviation of `count` uint8 values, as the acquisition check defines them (the Python server
// computes the same doubles): exact integer sums, mean = sum / N, var = sumsq / N - mean^2, std = sqrt(max(var, 0)).
void PixelMeanStd(const uint8_t* values, size_t count, double* mean, double* stddev);

// Validates `request` (ValidateRequestFields first) against `limits` and the serving model's `manifest`,
// decoding PNGs and resizing when the manifest allows it. Every check that does not need decoded pixels
// runs on every patch before the batch buffer is allocated; only the checks that do (a PNG's compressed
// data, its decoded size and channels) run after it. On failure returns an error naming the first problem
// (patch index and region included); `batch` is then unspecified.
Status ValidateAndDecode(const tfad::inspection::v1::InspectRequest& request, const Manifest& manifest,
                         const RequestLimits& limits, DecodedBatch* batch);

}  // namespace tfad

#endif  // TFAD_CC_VALIDATION_H_
