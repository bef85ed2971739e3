#include "cc/validation.h"

#include <cstring>
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

}  // namespace

Status ValidateAndDecode(const pb::InspectRequest& request, const Manifest& manifest, const RequestLimits& limits,
                         DecodedBatch* batch) {
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
  batch->pixels.assign(patch_size * static_cast<size_t>(n), 0);
  batch->thresholds.assign(static_cast<size_t>(n), 0.0f);
  batch->resized = 0;

  std::set<std::tuple<uint32_t, uint32_t, std::string>> seen;
  std::vector<uint8_t> decoded;
  for (int i = 0; i < n; ++i) {
    const pb::Patch& p = request.patches(i);
    const std::string where = "patch " + std::to_string(i) + " (region " + (p.region().empty() ? "<empty>" : p.region()) +
                              ", frame " + std::to_string(p.frame()) + ", vial " + std::to_string(p.vial()) + ")";
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

    int w = 0, h = 0, c = 0;
    const uint8_t* src = nullptr;
    if (p.encoding() == pb::IMAGE_ENCODING_RAW_UINT8) {
      w = static_cast<int>(p.width());
      h = static_cast<int>(p.height());
      c = static_cast<int>(p.channels());
      if (p.width() == 0 || p.height() == 0 || p.channels() == 0) {
        return Status::Error(where + ": raw image needs width, height and channels (got " +
                             Dims(p.width(), p.height(), p.channels()) + ")");
      }
      if (static_cast<int64_t>(p.width()) * p.height() > limits.max_image_pixels) {
        return Status::Error(where + ": " + Dims(p.width(), p.height(), p.channels()) + " exceeds the " +
                             std::to_string(limits.max_image_pixels) + "-pixel limit (--max_image_pixels)");
      }
      const int64_t expected = static_cast<int64_t>(p.width()) * p.height() * p.channels();
      if (bytes != expected) {
        return Status::Error(where + ": " + std::to_string(bytes) + " bytes for " +
                             Dims(p.width(), p.height(), p.channels()) + ", expected " + std::to_string(expected));
      }
      src = reinterpret_cast<const uint8_t*>(p.data().data());
    } else if (p.encoding() == pb::IMAGE_ENCODING_PNG) {
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
      src = decoded.data();
    } else {
      return Status::Error(where + ": encoding not set (use IMAGE_ENCODING_RAW_UINT8 or IMAGE_ENCODING_PNG)");
    }

    if (c != C) {
      return Status::Error(where + ": image has " + ChannelWord(c) + " channels; model " + manifest.name +
                           " takes " + ChannelWord(C));
    }
    uint8_t* dst = batch->pixels.data() + patch_size * static_cast<size_t>(i);
    if (w == W && h == H) {
      std::memcpy(dst, src, patch_size);
    } else if (manifest.resize == ResizePolicy::kBilinear) {
      ResizeBilinear(src, h, w, c, dst, H, W);
      ++batch->resized;
    } else {
      return Status::Error(where + ": image is " + Dims(w, h, c) + " but model " + manifest.name + " takes " +
                           Dims(W, H, C) + " and its manifest's resize policy is \"reject\"");
    }
  }
  return Status::Ok();
}

}  // namespace tfad
