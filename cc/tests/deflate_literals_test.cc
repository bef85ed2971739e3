#include "cc/deflate_literals.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cc/png_codec.h"

namespace tfad {
namespace {

// zlib's own inflater, the one libpng uses.
std::vector<uint8_t> Inflate(const std::string& stream, size_t expected_size) {
  std::vector<uint8_t> out(expected_size + 16);
  uLongf out_size = static_cast<uLongf>(out.size());
  const int rc = uncompress(out.data(), &out_size, reinterpret_cast<const Bytef*>(stream.data()),
                            static_cast<uLong>(stream.size()));
  EXPECT_EQ(rc, Z_OK) << "zlib refused the stream";
  out.resize(rc == Z_OK ? out_size : 0);
  return out;
}

void ExpectRoundTrip(const std::vector<uint8_t>& data, const std::string& what) {
  std::string stream;
  AppendZlibLiterals(data.data(), data.size(), &stream);
  EXPECT_EQ(Inflate(stream, data.size()), data) << what;
}

TEST(DeflateLiteralsTest, InflatesBackExactly) {
  ExpectRoundTrip({}, "empty");
  ExpectRoundTrip({42}, "one byte");
  ExpectRoundTrip(std::vector<uint8_t>(70000, 0), "one value only");
  ExpectRoundTrip(std::vector<uint8_t>(1000, 255), "255 only");
  std::vector<uint8_t> all(256 * 40);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint8_t>(i);
  ExpectRoundTrip(all, "every byte value equally often");
}

TEST(DeflateLiteralsTest, LimitsCodeLengthsOnSkewedHistograms) {
  // Counts 1, 2, 4, ..., 2^17 give an unlimited Huffman tree 18 deep (each merge takes the next symbol),
  // beyond deflate's 15 bits.
  std::vector<uint8_t> data;
  for (int symbol = 0; symbol < 18; ++symbol) {
    data.insert(data.end(), size_t{1} << symbol, static_cast<uint8_t>(symbol * 7));
  }
  ASSERT_GT(data.size(), 200000u);
  ExpectRoundTrip(data, "power-of-two histogram");
}

TEST(DeflateLiteralsTest, LimitsTheCodeLengthCodeToSevenBits) {
  // Byte counts 2^(10 - L) for code lengths L: 1 byte value at length 2, 1 at 5, 4 at 6, 64 at 7, 32 at 8,
  // 8 at 9 and 15 at 10 (with end-of-block). How often each length occurs (plus 131 unused literals and the
  // two distance codes of length 1) then gives an unlimited code-length code 8 deep, beyond its 3-bit fields.
  const int groups[][2] = {{1, 256}, {1, 32}, {4, 16}, {64, 8}, {32, 4}, {8, 2}, {15, 1}};  // {values, count}
  std::vector<uint8_t> data;
  int value = 0;
  for (const auto& group : groups) {
    for (int v = 0; v < group[0]; ++v, ++value) data.insert(data.end(), group[1], static_cast<uint8_t>(value));
  }
  ASSERT_EQ(value, 125);
  ASSERT_EQ(data.size(), 1023u);
  ExpectRoundTrip(data, "code-length code past 7 bits");
}

TEST(DeflateLiteralsTest, RandomDataOfManyDistributions) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t size = std::uniform_int_distribution<size_t>(0, 20000)(rng);
    const int symbols = std::uniform_int_distribution<int>(1, 256)(rng);
    std::geometric_distribution<int> skewed(std::uniform_real_distribution<double>(0.01, 0.9)(rng));
    std::vector<uint8_t> data(size);
    for (uint8_t& v : data) v = static_cast<uint8_t>((trial % 2 ? skewed(rng) : static_cast<int>(rng())) % symbols);
    ExpectRoundTrip(data, "trial " + std::to_string(trial));
  }
}

TEST(DeflateLiteralsTest, SameInputSameBytesAndAppendsAfterExistingContent) {
  std::vector<uint8_t> data(5000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>((i * i) >> 3);
  std::string first = "prefix", second;
  AppendZlibLiterals(data.data(), data.size(), &first);
  AppendZlibLiterals(data.data(), data.size(), &second);
  EXPECT_EQ(first.substr(0, 6), "prefix");
  EXPECT_EQ(first.substr(6), second);
  EXPECT_EQ(Inflate(second, data.size()), data);
}

TEST(DeflateLiteralsTest, CompressesNoiseAroundZeroBelowItsRawSize) {
  // What the PNG "Up" filter leaves of a smooth heatmap: small differences around 0 (mod 256).
  std::mt19937 rng(3);
  std::normal_distribution<double> noise(0.0, 3.0);
  std::vector<uint8_t> data(65536);
  for (uint8_t& v : data) v = static_cast<uint8_t>(static_cast<int>(std::lround(noise(rng))) & 0xff);
  std::string stream;
  AppendZlibLiterals(data.data(), data.size(), &stream);
  EXPECT_LT(stream.size(), data.size() / 2);  // entropy of N(0, 3) rounded: about 3.3 bits per byte
  EXPECT_EQ(Inflate(stream, data.size()), data);
}

TEST(DeflateLiteralsTest, GrayPngsOfEveryShapeDecodeWithLibpng) {
  std::mt19937 rng(11);
  const int sizes[][2] = {{1, 1}, {1, 300}, {300, 1}, {7, 5}, {256, 256}, {255, 257}, {640, 3}};
  for (const auto& wh : sizes) {
    for (int kind = 0; kind < 3; ++kind) {
      const int w = wh[0], h = wh[1];
      std::vector<uint8_t> pixels(static_cast<size_t>(w) * h);
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          const uint8_t flat = 200, gradient = static_cast<uint8_t>(x + 3 * y), noisy = static_cast<uint8_t>(rng());
          pixels[static_cast<size_t>(y) * w + x] = kind == 0 ? flat : kind == 1 ? gradient : noisy;
        }
      }
      std::string png;
      ASSERT_TRUE(EncodeGrayPng(pixels.data(), w, h, &png).ok());
      PngInfo info;
      std::vector<uint8_t> decoded;
      const Status s = DecodePng(png, int64_t{1} << 20, &info, &decoded);
      ASSERT_TRUE(s.ok()) << w << "x" << h << " kind " << kind << ": " << s.message();
      EXPECT_EQ(info.width, w);
      EXPECT_EQ(info.height, h);
      EXPECT_EQ(decoded, pixels) << w << "x" << h << " kind " << kind;
    }
  }
}

}  // namespace
}  // namespace tfad
