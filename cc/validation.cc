#include "cc/validation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <set>
#include <tuple>

#include "cc/image_resize.h"
#include "cc/png_codec.h"

namespace tfad {
namespace {

namespace pb = tfad::inspection::v1;

std::string Dims(int64_t w, int64_t h, int64_t c) {
  return std::to_string(w) + "x" + std::to_string(h) + "x" + std::to_string(c);
}

std::string ChannelWord(int c) {
  switch (c) {
    case 1: return "1 (gray)";
    case 2: return "2 (gray+alpha)";
    case 3: return "3 (RGB)";
    case 4: return "4 (RGBA)";
    default: return std::to_string(c);
  }
}

// Channels and size against the model: channels must match; size must match unless the policy is bilinear,
// and then be within kMaxResizeFactor of the model's on each side.
Status CheckShape(const std::string& where, int w, int h, int c, const Manifest& manifest) {
  const int H = manifest.height, W = manifest.width, C = manifest.channels;
  if (c != C) {
    return Status::Error(where + ": image has " + ChannelWord(c) + " channels; model " + manifest.name + " takes " +
                         ChannelWord(C));
  }
  if (w == W && h == H) return Status::Ok();
  if (manifest.resize != ResizePolicy::kBilinear) {
    return Status::Error(where + ": image is " + Dims(w, h, c) + " but model " + manifest.name + " takes " +
                         Dims(W, H, C) + " and its manifest's resize policy is \"reject\"");
  }
  // int64: w and h fit an int (w x h x c <= --max_patch_bytes), their products with the factor need not
  const auto within = [](int64_t size, int64_t model) {
    return size * kMaxResizeFactor >= model && size <= model * kMaxResizeFactor;
  };
  if (!within(w, W) || !within(h, H)) {
    const auto range = [](int model) {
      return std::to_string((model + kMaxResizeFactor - 1) / kMaxResizeFactor) + "-" +
             std::to_string(model * kMaxResizeFactor);
    };
    return Status::Error(where + ": image is " + Dims(w, h, c) + " but model " + manifest.name + " takes " +
                         Dims(W, H, C) + "; its resize policy \"bilinear\" resizes widths " + range(W) +
                         " and heights " + range(H) + " only (at most " + std::to_string(kMaxResizeFactor) +
                         "x either way)");
  }
  return Status::Ok();
}

// An id-like string: at most kMaxIdBytes of printable ASCII. The error never contains the value.
Status CheckId(const char* field, const std::string& value) {
  if (value.size() > kMaxIdBytes) {
    return Status::Error(std::string(field) + " is " + std::to_string(value.size()) + " bytes; at most " +
                         std::to_string(kMaxIdBytes) + " allowed");
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(value[i]);
    if (ch < 0x20 || ch > 0x7e) {
      static const char kHex[] = "0123456789abcdef";
      return Status::Error(std::string(field) + " has a byte that is not printable ASCII (0x" + kHex[ch >> 4] +
                           kHex[ch & 15] + " at offset " + std::to_string(i) + ")");
    }
  }
  return Status::Ok();
}

// What the first pass learns about a patch that passed its checks.
struct PatchPlan {
  bool png = false;
  int w = 0, h = 0, c = 0;  // raw patches only
};

}  // namespace

void PixelMeanStd(const uint8_t* values, size_t count, double* mean, double* stddev) {
  // uint32 partial sums: a block of 65536 values (squares <= 65025) cannot overflow them. The fixed 64-value
  // chunks vectorise at -O2 (a loop of unknown trip count does not).
  constexpr size_t kBlock = 65536, kChunk = 64;
  uint64_t sum = 0, sumsq = 0;
  size_t k = 0;
  while (k < count) {
    const size_t end = std::min(count, k + kBlock);
    uint32_t block_sum = 0, block_sumsq = 0;
    for (; k + kChunk <= end; k += kChunk) {
      for (size_t j = 0; j < kChunk; ++j) {
        const uint32_t v = values[k + j];
        block_sum += v;
        block_sumsq += v * v;
      }
    }
    for (; k < end; ++k) {
      const uint32_t v = values[k];
      block_sum += v;
      block_sumsq += v * v;
    }
    sum += block_sum;
    sumsq += block_sumsq;
  }
  const double n = static_cast<double>(count);
  *mean = static_cast<double>(sum) / n;
  const double var = static_cast<double>(sumsq) / n - *mean * *mean;
  *stddev = std::sqrt(std::max(var, 0.0));
}

int64_t LargestLegalRequestBytes(const RequestLimits& limits) {
  return static_cast<int64_t>(limits.max_patches) * (limits.max_patch_bytes + kPatchOverheadBytes) +
         kRequestOverheadBytes;
}

int64_t DefaultMaxMessageBytes(const RequestLimits& limits) {
  constexpr int64_t kMiB = 1 << 20;
  const int64_t bytes = LargestLegalRequestBytes(limits) + kMessageMarginBytes;
  return std::min(kMaxMessageBytesCap, (bytes + kMiB - 1) / kMiB * kMiB);
}

Status ValidateRequestFields(const pb::InspectRequest& request) {
  for (const auto& [field, value] : {std::pair<const char*, const std::string*>{"product_id", &request.product_id()},
                                     {"run_id", &request.run_id()},
                                     {"station_id", &request.station_id()},
                                     {"model_name", &request.model_name()}}) {
    Status s = CheckId(field, *value);
    if (!s.ok()) return s;
  }
  if (!pb::HeatmapMode_IsValid(request.heatmaps())) {
    return Status::Error("heatmaps: unknown HeatmapMode value " + std::to_string(request.heatmaps()) +
                         " (known: 0 HEATMAP_MODE_NONE, 1 HEATMAP_MODE_REJECTED, 2 HEATMAP_MODE_ALL)");
  }
  return Status::Ok();
}

Status ValidateAndDecode(const pb::InspectRequest& request, const Manifest& manifest, const RequestLimits& limits,
                         DecodedBatch* batch) {
  Status fields = ValidateRequestFields(request);
  if (!fields.ok()) return fields;
  const int n = request.patches_size();
  if (n == 0) return Status::Error("empty product: the request has no patches");
  if (n > limits.max_patches) {
    return Status::Error(std::to_string(n) + " patches in one product; at most " +
                         std::to_string(limits.max_patches) + " allowed (--max_patches)");
  }
  const int H = manifest.height, W = manifest.width, C = manifest.channels;
  const size_t patch_size = static_cast<size_t>(H) * W * C;
  batch->n = n;
  batch->height = H;
  batch->width = W;
  batch->channels = C;
  batch->pixels.clear();
  batch->pixels.shrink_to_fit();
  batch->thresholds.assign(static_cast<size_t>(n), 0.0f);
  batch->resized = 0;
  batch->blank.clear();
  const bool stats = manifest.acquisition_check.has_value();  // read every pixel only for a check that needs it
  batch->pixel_mean.assign(stats ? static_cast<size_t>(n) : 0, 0.0);
  batch->pixel_std.assign(stats ? static_cast<size_t>(n) : 0, 0.0);

  auto where_of = [](int i, const pb::Patch& p) {
    return "patch " + std::to_string(i) + " (region " + (p.region().empty() ? "<empty>" : p.region()) + ", frame " +
           std::to_string(p.frame()) + ", vial " + std::to_string(p.vial()) + ")";
  };

  // Pass 1: every check that needs no decoded pixels, on every patch, before the batch buffer exists.
  std::vector<PatchPlan> plans(static_cast<size_t>(n));
  std::set<std::tuple<uint32_t, uint32_t, std::string>> seen;
  for (int i = 0; i < n; ++i) {
    const pb::Patch& p = request.patches(i);
    Status region_ok = CheckId("region", p.region());
    if (!region_ok.ok()) {
      return Status::Error("patch " + std::to_string(i) + " (frame " + std::to_string(p.frame()) + ", vial " +
                           std::to_string(p.vial()) + "): " + region_ok.message());
    }
    const std::string where = where_of(i, p);
    if (p.region().empty()) return Status::Error(where + ": region is empty");
    const std::optional<float> threshold = manifest.ThresholdFor(p.region());
    if (!threshold) {
      return Status::Error(where + ": unknown region '" + p.region() + "'; model " + manifest.name + " v" +
                           std::to_string(manifest.version) + " has thresholds for " + manifest.RegionList() +
                           " and no default");
    }
    batch->thresholds[static_cast<size_t>(i)] = *threshold;
    if (!seen.emplace(p.frame(), p.vial(), p.region()).second) {
      return Status::Error(where + ": duplicate patch (same frame, vial and region as an earlier patch)");
    }
    const int64_t bytes = static_cast<int64_t>(p.data().size());
    if (bytes == 0) return Status::Error(where + ": no image data");
    if (bytes > limits.max_patch_bytes) {
      return Status::Error(where + ": " + std::to_string(bytes) + " bytes exceed the limit of " +
                           std::to_string(limits.max_patch_bytes) + " per patch (--max_patch_bytes)");
    }

    PatchPlan& plan = plans[static_cast<size_t>(i)];
    if (p.encoding() == pb::IMAGE_ENCODING_RAW_UINT8) {
      if (p.width() == 0 || p.height() == 0 || p.channels() == 0) {
        return Status::Error(where + ": raw image needs width, height and channels (got " +
                             Dims(p.width(), p.height(), p.channels()) + ")");
      }
      // Unsigned 64-bit: two uint32 fields multiply without overflow ((2^32-1)^2 < 2^64). A signed product
      // could wrap negative, pass the checks, and let a tiny patch claim a huge image (a crash in the resize).
      const uint64_t pixels = static_cast<uint64_t>(p.width()) * p.height();
      if (pixels > static_cast<uint64_t>(limits.max_image_pixels)) {
        return Status::Error(where + ": " + Dims(p.width(), p.height(), p.channels()) + " exceeds the " +
                             std::to_string(limits.max_image_pixels) + "-pixel limit (--max_image_pixels)");
      }
      const uint64_t expected = pixels * p.channels();  // <= 2^31 x (2^32-1) < 2^64
      if (static_cast<uint64_t>(bytes) != expected) {
        return Status::Error(where + ": " + std::to_string(bytes) + " bytes for " +
                             Dims(p.width(), p.height(), p.channels()) + ", expected " + std::to_string(expected));
      }
      // Now width x height x channels = bytes <= --max_patch_bytes: each fits an int.
      const int w = static_cast<int>(p.width()), h = static_cast<int>(p.height()), c = static_cast<int>(p.channels());
      Status s = CheckShape(where, w, h, c, manifest);
      if (!s.ok()) return s;
      plan.w = w;
      plan.h = h;
      plan.c = c;
    } else if (p.encoding() == pb::IMAGE_ENCODING_PNG) {
      plan.png = true;
      PngInfo info;
      Status s = ReadPngInfo(p.data(), &info);
      if (!s.ok()) return Status::Error(where + ": " + s.message());
      if (static_cast<uint64_t>(info.width) * info.height > static_cast<uint64_t>(limits.max_image_pixels)) {
        return Status::Error(where + ": PNG is " + std::to_string(info.width) + "x" + std::to_string(info.height) +
                             ", more than the " + std::to_string(limits.max_image_pixels) + "-pixel limit");
      }
      if (info.sixteen_bit) return Status::Error(where + ": 16-bit PNG not supported (send 8-bit)");
    } else if (p.encoding() == pb::IMAGE_ENCODING_UNSPECIFIED) {
      return Status::Error(where + ": encoding not set (use IMAGE_ENCODING_RAW_UINT8 or IMAGE_ENCODING_PNG)");
    } else {
      return Status::Error(where + ": unknown ImageEncoding value " + std::to_string(p.encoding()) +
                           " (use IMAGE_ENCODING_RAW_UINT8 or IMAGE_ENCODING_PNG)");
    }
  }

  // Pass 2: allocate the batch, decode the PNGs (their remaining checks need the pixels) and fill it.
  batch->pixels.assign(patch_size * static_cast<size_t>(n), 0);
  std::vector<uint8_t> decoded;
  for (int i = 0; i < n; ++i) {
    const pb::Patch& p = request.patches(i);
    const PatchPlan& plan = plans[static_cast<size_t>(i)];
    int w = plan.w, h = plan.h, c = plan.c;
    const uint8_t* src = reinterpret_cast<const uint8_t*>(p.data().data());
    if (plan.png) {
      const std::string where = where_of(i, p);
      PngInfo info;
      Status s = DecodePng(p.data(), limits.max_image_pixels, &info, &decoded);
      if (!s.ok()) return Status::Error(where + ": " + s.message());
      w = info.width;
      h = info.height;
      c = info.channels;
      if ((p.width() != 0 && static_cast<int>(p.width()) != w) || (p.height() != 0 && static_cast<int>(p.height()) != h) ||
          (p.channels() != 0 && static_cast<int>(p.channels()) != c)) {
        return Status::Error(where + ": PNG is " + Dims(w, h, c) + " but the patch declares " +
                             Dims(p.width(), p.height(), p.channels()));
      }
      s = CheckShape(where, w, h, c, manifest);
      if (!s.ok()) return s;
      src = decoded.data();
    }
    uint8_t* dst = batch->pixels.data() + patch_size * static_cast<size_t>(i);
    if (w == W && h == H) {
      std::memcpy(dst, src, patch_size);
    } else {  // CheckShape allowed it: the bilinear policy
      ResizeBilinear(src, h, w, c, dst, H, W);
      ++batch->resized;
    }
    // every pixel equal to the first (all C channels); a real image differs within a few bytes, so only a
    // blank patch is read whole
    bool blank = true;
    for (size_t k = static_cast<size_t>(C); blank && k < patch_size; ++k) blank = dst[k] == dst[k % C];
    if (blank) batch->blank.push_back(i);
    if (stats) {
      const size_t at = static_cast<size_t>(i);
      PixelMeanStd(dst, patch_size, &batch->pixel_mean[at], &batch->pixel_std[at]);
    }
  }
  return Status::Ok();
}

}  // namespace tfad
