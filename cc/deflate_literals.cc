#include "cc/deflate_literals.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace tfad {
namespace {

constexpr int kEndOfBlock = 256;
constexpr int kLiteralCodes = 257;  // literals 0..255 and end-of-block; no lengths (no matches)
constexpr int kDistanceCodes = 2;   // unused, but two codes of 1 bit keep the distance code complete
constexpr int kCodeLengthCodes = 19;
constexpr std::array<int, kCodeLengthCodes> kCodeLengthOrder = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
                                                                11, 4,  12, 3, 13, 2, 14, 1, 15};

// Huffman code lengths for `freq`, none above `limit`. At least two symbols get a code (a lone symbol is
// given a partner), so the code is complete. Over the limit, the frequencies are halved (rounding up, so
// none drops to 0) and the tree rebuilt: the flatter the frequencies, the shallower the tree.
std::vector<uint8_t> HuffmanLengths(std::vector<uint64_t> freq, int limit) {
  const int n = static_cast<int>(freq.size());
  int used = static_cast<int>(std::count_if(freq.begin(), freq.end(), [](uint64_t f) { return f > 0; }));
  for (int i = 0; used < 2 && i < n; ++i) {
    if (freq[i] == 0) {
      freq[i] = 1;
      ++used;
    }
  }
  std::vector<uint8_t> lengths(static_cast<size_t>(n), 0);
  while (true) {
    std::vector<std::pair<uint64_t, int>> leaves;
    for (int i = 0; i < n; ++i) {
      if (freq[i] > 0) leaves.emplace_back(freq[i], i);
    }
    std::sort(leaves.begin(), leaves.end());
    const int m = static_cast<int>(leaves.size());
    // Two-queue construction: leaves in frequency order, then merged nodes, which come out in order too.
    std::vector<uint64_t> weight(static_cast<size_t>(2 * m - 1));
    std::vector<int> parent(static_cast<size_t>(2 * m - 1), -1);
    for (int k = 0; k < m; ++k) weight[k] = leaves[k].first;
    int next_leaf = 0, next_inner = m;
    auto take_smallest = [&](int built) {
      if (next_leaf < m && (next_inner >= built || weight[next_leaf] <= weight[next_inner])) return next_leaf++;
      return next_inner++;
    };
    for (int built = m; built < 2 * m - 1; ++built) {
      const int a = take_smallest(built);
      const int b = take_smallest(built);
      weight[built] = weight[a] + weight[b];
      parent[a] = parent[b] = built;
    }
    std::vector<int> depth(static_cast<size_t>(2 * m - 1), 0);
    int deepest = 0;
    for (int k = 2 * m - 3; k >= 0; --k) {  // parents have higher indices than their children
      depth[k] = depth[parent[k]] + 1;
      if (k < m) deepest = std::max(deepest, depth[k]);
    }
    if (deepest <= limit) {
      for (int k = 0; k < m; ++k) lengths[leaves[k].second] = static_cast<uint8_t>(depth[k]);
      return lengths;
    }
    for (uint64_t& f : freq) {
      if (f > 0) f = (f + 1) / 2;
    }
  }
}

struct Code {
  uint32_t bits = 0;  // bit-reversed: deflate sends a Huffman code's first bit first, in an LSB-first stream
  int length = 0;
};

// RFC 1951 3.2.2: canonical codes from the lengths.
std::vector<Code> CanonicalCodes(const std::vector<uint8_t>& lengths) {
  int count[16] = {0};
  for (uint8_t l : lengths) count[l]++;
  count[0] = 0;
  uint32_t next[16] = {0};
  uint32_t code = 0;
  for (int bits = 1; bits < 16; ++bits) {
    code = (code + static_cast<uint32_t>(count[bits - 1])) << 1;
    next[bits] = code;
  }
  std::vector<Code> codes(lengths.size());
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int l = lengths[s];
    if (l == 0) continue;
    uint32_t c = next[l]++, reversed = 0;
    for (int i = 0; i < l; ++i, c >>= 1) reversed = (reversed << 1) | (c & 1u);
    codes[s] = {reversed, l};
  }
  return codes;
}

// LSB-first bit writer into a buffer sized in advance.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : out_(out) {}
  void Put(uint32_t bits, int length) {
    acc_ |= static_cast<uint64_t>(bits) << filled_;
    filled_ += length;
    if (filled_ >= 32) {
      for (int i = 0; i < 4; ++i) out_[i] = static_cast<uint8_t>(acc_ >> (8 * i));  // low byte first
      out_ += 4;
      acc_ >>= 32;
      filled_ -= 32;
    }
  }
  uint8_t* Finish() {
    for (; filled_ > 0; filled_ -= 8, acc_ >>= 8) *out_++ = static_cast<uint8_t>(acc_);
    return out_;
  }

 private:
  uint8_t* out_;
  uint64_t acc_ = 0;
  int filled_ = 0;
};

void PutU32BigEndian(uint32_t v, std::string* out) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                         static_cast<char>(v)};
  out->append(bytes, 4);
}

}  // namespace

void AppendZlibLiterals(const uint8_t* data, size_t size, std::string* out) {
  // Four partial histograms: a run of equal bytes would otherwise make every increment wait for the last.
  uint64_t partial[4][256] = {};
  size_t i = 0;
  for (; i + 4 <= size; i += 4) {
    partial[0][data[i]]++;
    partial[1][data[i + 1]]++;
    partial[2][data[i + 2]]++;
    partial[3][data[i + 3]]++;
  }
  for (; i < size; ++i) partial[0][data[i]]++;
  std::vector<uint64_t> histogram(kLiteralCodes, 0);
  for (int b = 0; b < 256; ++b) {
    histogram[b] = partial[0][b] + partial[1][b] + partial[2][b] + partial[3][b];
  }
  histogram[kEndOfBlock] = 1;
  const std::vector<uint8_t> literal_lengths = HuffmanLengths(histogram, 15);
  const std::vector<Code> literal_codes = CanonicalCodes(literal_lengths);

  // The code lengths of both alphabets, sent with symbols 0..15 only (no run-length symbols: they would
  // save at most a few hundred bits per image).
  std::vector<uint8_t> all_lengths(literal_lengths);
  all_lengths.insert(all_lengths.end(), kDistanceCodes, 1);
  std::vector<uint64_t> length_histogram(kCodeLengthCodes, 0);
  for (uint8_t l : all_lengths) length_histogram[l]++;
  const std::vector<uint8_t> length_lengths = HuffmanLengths(length_histogram, 7);
  const std::vector<Code> length_codes = CanonicalCodes(length_lengths);
  int sent_length_codes = kCodeLengthCodes;
  while (sent_length_codes > 4 && length_lengths[kCodeLengthOrder[sent_length_codes - 1]] == 0) --sent_length_codes;

  uint64_t bits = 3 + 5 + 5 + 4 + 3 * static_cast<uint64_t>(sent_length_codes);
  for (uint8_t l : all_lengths) bits += length_codes[l].length;
  for (int s = 0; s < kLiteralCodes; ++s) bits += histogram[s] * literal_codes[s].length;

  out->push_back(static_cast<char>(0x78));  // deflate, 32 KiB window
  out->push_back(static_cast<char>(0x01));  // fastest-compression hint; (0x78 << 8 | 0x01) % 31 == 0
  const size_t start = out->size();
  out->resize(start + static_cast<size_t>((bits + 7) / 8) + 8);  // + slack; cut to the bytes written below
  BitWriter writer(reinterpret_cast<uint8_t*>(&(*out)[start]));
  writer.Put(1, 1);  // final block
  writer.Put(2, 2);  // dynamic Huffman codes
  writer.Put(kLiteralCodes - 257, 5);
  writer.Put(kDistanceCodes - 1, 5);
  writer.Put(static_cast<uint32_t>(sent_length_codes - 4), 4);
  for (int i = 0; i < sent_length_codes; ++i) writer.Put(length_lengths[kCodeLengthOrder[i]], 3);
  for (uint8_t l : all_lengths) writer.Put(length_codes[l].bits, length_codes[l].length);
  for (i = 0; i + 2 <= size; i += 2) {  // two codes of <= 15 bits per write: half the flushes' branches
    const Code& a = literal_codes[data[i]];
    const Code& b = literal_codes[data[i + 1]];
    writer.Put(a.bits | (b.bits << a.length), a.length + b.length);
  }
  if (i < size) writer.Put(literal_codes[data[i]].bits, literal_codes[data[i]].length);
  writer.Put(literal_codes[kEndOfBlock].bits, literal_codes[kEndOfBlock].length);
  const uint8_t* end = writer.Finish();
  out->resize(static_cast<size_t>(end - reinterpret_cast<const uint8_t*>(out->data())));
  // adler32 takes a uInt length: heatmaps are far below 4 GiB, but feed it in pieces to be exact for any size
  uLong adler = adler32(0L, Z_NULL, 0);
  for (size_t done = 0; done < size;) {
    const size_t piece = std::min<size_t>(size - done, size_t{1} << 30);
    adler = adler32(adler, data + done, static_cast<uInt>(piece));
    done += piece;
  }
  PutU32BigEndian(static_cast<uint32_t>(adler), out);
}

}  // namespace tfad
