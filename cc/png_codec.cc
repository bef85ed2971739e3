#include "cc/png_codec.h"

#include <png.h>
#include <zlib.h>

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cc/deflate_literals.h"

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

// Rows of an 8-bit gray PNG before compression: each a filter byte and `width` bytes. Row y is written at
// offset y * (width + 1) + 1 by the caller, then filtered in place by UpFilterRows.
std::string RowBuffer(int width, int height) {
  return std::string((static_cast<size_t>(width) + 1) * static_cast<size_t>(height), '\0');
}

// PNG's "Up" filter in place: each byte minus the one above it (row 0 stays filter 0, None). Bottom-up, so
// every row still reads the unfiltered row above it.
void UpFilterRows(std::string* rows, int width, int height) {
  const size_t stride = static_cast<size_t>(width) + 1;
  auto* data = reinterpret_cast<uint8_t*>(&(*rows)[0]);
  for (int y = height - 1; y >= 1; --y) {
    uint8_t* here = data + stride * static_cast<size_t>(y);
    const uint8_t* above = here - stride;
    here[0] = 2;  // Up
    for (int x = 1; x <= width; ++x) here[x] = static_cast<uint8_t>(here[x] - above[x]);
  }
}

// Written directly rather than with libpng: heatmaps are encoded inside the machine cycle. Rows are
// filtered with PNG's "Up" filter, which leaves the smooth parts of a heatmap near 0, and the bytes are
// entropy-coded without string matching (cc/deflate_literals.h): a 60-patch product's heatmaps in about half
// the time of zlib's run-length deflate, and 23-32 % fewer bytes (2.6 GHz Intel Xeon;
// benchmarks/heatmap_png.py, docs/performance.md).
void PngOfRows(std::string* rows, int width, int height, std::string* png) {
  UpFilterRows(rows, width, height);
  std::string compressed;
  AppendZlibLiterals(reinterpret_cast<const uint8_t*>(rows->data()), rows->size(), &compressed);
  *png = GrayPngAround(width, height, compressed);
}

}  // namespace

Status EncodeGrayPng(const uint8_t* pixels, int width, int height, std::string* png) {
  if (width <= 0 || height <= 0) return Status::Error("PNG encode: empty image");
  std::string rows = RowBuffer(width, height);
  for (int y = 0; y < height; ++y) {
    std::memcpy(&rows[(static_cast<size_t>(width) + 1) * y + 1], pixels + static_cast<size_t>(y) * width,
                static_cast<size_t>(width));
  }
  PngOfRows(&rows, width, height, png);
  return Status::Ok();
}

std::string GrayPngAround(int width, int height, const std::string& zlib_rows) {
  std::string header;
  PutU32(&header, static_cast<uint32_t>(width));
  PutU32(&header, static_cast<uint32_t>(height));
  header += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit, gray, deflate, filter method 0, no interlace
  std::string png("\x89PNG\r\n\x1a\n", 8);
  PutChunk(&png, "IHDR", header);
  PutChunk(&png, "IDAT", zlib_rows);
  PutChunk(&png, "IEND", "");
  return png;
}

void HeatmapToGray(const float* heatmap, size_t count, uint8_t* gray) {
  size_t i = 0;
#if defined(__SSE2__)
  // 16 values a step, the same float operations as the loop below: minps returns its second operand when
  // the first is NaN (so NaN becomes 1), then maxps, a multiply, an add and a truncation, packed with
  // saturation (the values are already in [0, 255]). GCC does not vectorise the scalar loop (its
  // float-to-int conversions): for 60 heatmaps of 256 x 256 this takes 1.0 ms against its 9.2 (a scratch
  // timing at -O2), and the server's encoder 13.3-13.4 ms against 17.1-17.5 (benchmarks/heatmap_png.py);
  // both on a 2.6 GHz Intel Xeon (family 6 model 167), docs/performance.md.
  const __m128 one = _mm_set1_ps(1.0f), zero = _mm_setzero_ps();
  const __m128 scale = _mm_set1_ps(255.0f), half = _mm_set1_ps(0.5f);
  for (; i + 16 <= count; i += 16) {
    __m128i words[4];
    for (int k = 0; k < 4; ++k) {
      __m128 v = _mm_max_ps(_mm_min_ps(_mm_loadu_ps(heatmap + i + 4 * k), one), zero);
      words[k] = _mm_cvttps_epi32(_mm_add_ps(_mm_mul_ps(v, scale), half));
    }
    const __m128i low = _mm_packs_epi32(words[0], words[1]), high = _mm_packs_epi32(words[2], words[3]);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(gray + i), _mm_packus_epi16(low, high));
  }
#endif
  for (; i < count; ++i) {
    // A min, then a max: a comparison with NaN is false, so NaN becomes 1 (unknown = most anomalous) in the
    // first line, as do values above 1.
    float v = heatmap[i] < 1.0f ? heatmap[i] : 1.0f;
    v = v > 0.0f ? v : 0.0f;
    gray[i] = static_cast<uint8_t>(static_cast<int>(v * 255.0f + 0.5f));  // round half up; v is in [0, 1]
  }
}

Status EncodeHeatmapPng(const float* heatmap, int width, int height, std::string* png) {
  if (width <= 0 || height <= 0) return Status::Error("PNG encode: empty image");
  std::string rows = RowBuffer(width, height);  // the gray values go straight into the PNG's rows
  for (int y = 0; y < height; ++y) {
    HeatmapToGray(heatmap + static_cast<size_t>(y) * width, static_cast<size_t>(width),
                  reinterpret_cast<uint8_t*>(&rows[(static_cast<size_t>(width) + 1) * y + 1]));
  }
  PngOfRows(&rows, width, height, png);
  return Status::Ok();
}

}  // namespace tfad
