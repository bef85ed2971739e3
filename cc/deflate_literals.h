// A zlib stream (RFC 1950) holding one dynamic-Huffman deflate block (RFC 1951) of literals only: entropy
// coding without string matching. For filtered heatmap rows, whose bytes are noisy and rarely repeat,
// matching finds little, and zlib's run-length or literal-only deflate took 0.55-0.65 ms per 256x256
// heatmap on a 2.6 GHz Xeon; this one builds a Huffman code from the byte histogram and writes two bytes'
// codes per step (benchmarks/heatmap_png.py, docs/performance.md).
#ifndef TFAD_CC_DEFLATE_LITERALS_H_
#define TFAD_CC_DEFLATE_LITERALS_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace tfad {

// Appends the zlib stream of `data[0, size)` to `out`. Any inflater (zlib, libpng) reads it back exactly.
// The literal/length code is limited to 15 bits and the code-length code to 7, as deflate requires; both
// codes and the distance code are complete (two symbols at least), which every decoder accepts.
void AppendZlibLiterals(const uint8_t* data, size_t size, std::string* out);

}  // namespace tfad

#endif  // TFAD_CC_DEFLATE_LITERALS_H_
