#include "cc/png_codec.h"

#include <png.h>
#include <zlib.h>

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

namespace {

void PutU32(std::string* out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                         static_cast<char>(v)};
  out->append(bytes, 4);
}

void PutChunk(std::string* out, const char type[4], const std::string& data) {
  PutU32(out, static_cast<uint32_t>(data.size()));
  const size_t type_at = out->size();
  out->append(type, 4);
  out->append(data);
  const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out->data() + type_at), static_cast<uInt>(4 + data.size()));
  PutU32(out, static_cast<uint32_t>(crc));
}

}  // namespace

// Written directly with zlib rather than libpng: heatmaps are encoded inside the machine cycle, and
// run-length deflate without row filters is several times faster than libpng's simplified writer.
Status EncodeGrayPng(const uint8_t* pixels, int width, int height, std::string* png) {
  if (width <= 0 || height <= 0) return Status::Error("PNG encode: empty image");
  const size_t row = static_cast<size_t>(width) + 1;  // filter byte + pixels
  std::string raw(row * static_cast<size_t>(height), '\0');
  for (int y = 0; y < height; ++y) {
    std::memcpy(&raw[row * static_cast<size_t>(y) + 1], pixels + static_cast<size_t>(y) * width, static_cast<size_t>(width));
  }
  // Run-length-only deflate: heatmaps are mostly flat, and on this class of machine it is about twice as
  // fast as deflate level 1 with string matching (measured: ~0.8 ms vs ~1.3 ms for a noisy 256x256).
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15, 8, Z_RLE) != Z_OK) return Status::Error("PNG encode: deflateInit failed");
  std::string compressed(deflateBound(&zs, static_cast<uLong>(raw.size())), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(&raw[0]);
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(&compressed[0]);
  zs.avail_out = static_cast<uInt>(compressed.size());
  const int rc = deflate(&zs, Z_FINISH);
  const uLong compressed_size = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) return Status::Error("PNG encode: deflate failed");
  compressed.resize(compressed_size);
  std::string header;
  PutU32(&header, static_cast<uint32_t>(width));
  PutU32(&header, static_cast<uint32_t>(height));
  header += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit, grayscale, deflate, no filter method, no interlace
  png->assign("\x89PNG\r\n\x1a\n", 8);
  PutChunk(png, "IHDR", header);
  PutChunk(png, "IDAT", compressed);
  PutChunk(png, "IEND", "");
  return Status::Ok();
}

Status EncodeHeatmapPng(const float* heatmap, int width, int height, std::string* png) {
  std::vector<uint8_t> gray(static_cast<size_t>(width) * height);
  for (size_t i = 0; i < gray.size(); ++i) {
    float v = heatmap[i];
    if (std::isnan(v)) v = 1.0f;  // unknown = most anomalous
    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    gray[i] = static_cast<uint8_t>(v * 255.0f + 0.5f);  // round half up; v is in [0, 1]
  }
  return EncodeGrayPng(gray.data(), width, height, png);
}

}  // namespace tfad
