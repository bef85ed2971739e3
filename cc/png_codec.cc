#include "cc/png_codec.h"

#include <png.h>

#include <cmath>
#include <cstring>

namespace tfad {
namespace {

int ChannelsOf(png_uint_32 format) { return static_cast<int>(PNG_IMAGE_SAMPLE_CHANNELS(format)); }

// Begins a read; the caller must png_image_free on every path after success.
Status BeginRead(const std::string& png, png_image* image) {
  std::memset(image, 0, sizeof(*image));
  image->version = PNG_IMAGE_VERSION;
  if (png.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(png.data()), 0, 8) != 0) {
    return Status::Error("not a PNG (bad signature)");
  }
  if (!png_image_begin_read_from_memory(image, png.data(), png.size())) {
    std::string message = image->message;
    png_image_free(image);
    return Status::Error("corrupt PNG: " + message);
  }
  return Status::Ok();
}

}  // namespace

Status ReadPngInfo(const std::string& png, PngInfo* info) {
  png_image image;
  Status s = BeginRead(png, &image);
  if (!s.ok()) return s;
  info->width = static_cast<int>(image.width);
  info->height = static_cast<int>(image.height);
  info->channels = ChannelsOf(image.format & ~PNG_FORMAT_FLAG_COLORMAP);
  info->sixteen_bit = (image.format & PNG_FORMAT_FLAG_LINEAR) != 0;
  png_image_free(&image);
  return Status::Ok();
}

Status DecodePng(const std::string& png, int64_t max_pixels, PngInfo* info, std::vector<uint8_t>* pixels) {
  png_image image;
  Status s = BeginRead(png, &image);
  if (!s.ok()) return s;
  info->width = static_cast<int>(image.width);
  info->height = static_cast<int>(image.height);
  info->sixteen_bit = (image.format & PNG_FORMAT_FLAG_LINEAR) != 0;
  if (info->sixteen_bit) {
    png_image_free(&image);
    return Status::Error("16-bit PNG not supported (send 8-bit)");
  }
  if (static_cast<int64_t>(image.width) * image.height > max_pixels) {
    png_image_free(&image);
    return Status::Error("PNG is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                         ", more than the " + std::to_string(max_pixels) + "-pixel limit");
  }
  // Keep the file's channels (drop the colormap flag: palette images expand to RGB/RGBA).
  image.format &= ~(PNG_FORMAT_FLAG_COLORMAP | PNG_FORMAT_FLAG_LINEAR);
  info->channels = ChannelsOf(image.format);
  pixels->resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, pixels->data(), 0, nullptr)) {
    std::string message = image.message;
    png_image_free(&image);
    return Status::Error("corrupt PNG: " + message);
  }
  png_image_free(&image);
  return Status::Ok();
}

Status EncodeGrayPng(const uint8_t* pixels, int width, int height, std::string* png) {
  if (width <= 0 || height <= 0) return Status::Error("PNG encode: empty image");
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  // First call computes the size, the second writes.
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels, 0, nullptr)) {
    std::string message = image.message;
    png_image_free(&image);
    return Status::Error("PNG encode failed: " + message);
  }
  png->resize(size);
  if (!png_image_write_to_memory(&image, png->data(), &size, 0, pixels, 0, nullptr)) {
    std::string message = image.message;
    png_image_free(&image);
    return Status::Error("PNG encode failed: " + message);
  }
  png->resize(size);
  png_image_free(&image);
  return Status::Ok();
}

Status EncodeHeatmapPng(const float* heatmap, int width, int height, std::string* png) {
  std::vector<uint8_t> gray(static_cast<size_t>(width) * height);
  for (size_t i = 0; i < gray.size(); ++i) {
    float v = heatmap[i];
    if (std::isnan(v)) v = 1.0f;  // unknown = most anomalous
    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    gray[i] = static_cast<uint8_t>(std::lround(v * 255.0f));
  }
  return EncodeGrayPng(gray.data(), width, height, png);
}

}  // namespace tfad
