// The reconstruction families' score kernels, each one fused CPU pass per image (tfad.scoring.native):
//
// TfadSsim: per-image SSIM of two NHWC float batches.
// The same definition as tf.image.ssim(max_val=1, filter_size=11, filter_sigma=1.5): an 11x11 Gaussian
// window, the VALID region, mean over pixels and channels. As TensorFlow ops, the four blurred maps, their
// two passes and SSIM's formula are a dozen kernels that each stream a product's maps through memory; here
// each image is read once and its maps never leave the core's caches: a ring of the last 12 row-filtered
// rows (4 maps x 12 rows, each held twice, 102 KB for 256-wide patches) feeds the column pass, the formula
// and the mean in one loop, two output rows at a time. The window's symmetry halves the multiplications.
// benchmarks/scoring_kernels.py times it against an earlier version (docs/performance.md).
//
// TfadMinmaxHeatmap: per-image min-max normalised |x - y| (mean over channels), which as TensorFlow ops is
// five passes over a product's maps (difference, minimum, maximum, subtraction, division); here two, the
// second over an image already in the core's cache.
//
// Compiled twice: by tfad.scoring.native for Python (g++ against the TensorFlow wheel's headers) and by
// Bazel into the C++ server's TensorFlow backend (cc/BUILD), so a SavedModel that uses the op loads in both.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tfad {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

constexpr int kTaps = 11;          // tf.image.ssim's filter_size
constexpr int kHalf = kTaps / 2;   // the window's centre tap
constexpr int kRingRows = kTaps + 1;  // the row-filtered rows two output rows need
constexpr double kSigma = 1.5;     // its filter_sigma
constexpr float kC1 = 0.01f * 0.01f;  // (k1 L)^2, L = 1
constexpr float kC2 = 0.03f * 0.03f;  // (k2 L)^2
constexpr int kMaps = 4;           // blurred x, y, x^2 + y^2, xy (var_x + var_y is only needed as a sum)
constexpr int kAlignFloats = 16;   // 64 bytes, a cache line
constexpr int kLanes = 16;         // partial sums of a row's SSIM values (vectorisable, fixed order)
constexpr float kHeatmapEpsilon = 1e-8f;  // the heatmap's smallest divisor (a constant difference maps to 0)

struct GaussianTaps {
  float weight[kTaps];
  GaussianTaps() {
    double raw[kTaps], total = 0.0;
    for (int t = 0; t < kTaps; ++t) {
      const double offset = (t - (kTaps - 1) / 2.0) / kSigma;
      raw[t] = std::exp(-0.5 * offset * offset);
      total += raw[t];
    }
    for (int t = 0; t < kTaps; ++t) weight[t] = static_cast<float>(raw[t] / total);
  }
};

const GaussianTaps& Taps() {
  static const GaussianTaps taps;
  return taps;
}

// Scratch of one worker: the ring of row-filtered rows (each written twice, to slots r % 12 and r % 12 + 12,
// so that any 12 consecutive rows lie in consecutive slots), and one row each of x, y (gathered from colour
// images), x^2 + y^2, xy and the SSIM values of two output rows.
struct Scratch {
  explicit Scratch(int64_t width)
      : ring_storage(static_cast<size_t>(2 * kRingRows) * kMaps * MapStride(width) + kAlignFloats),
        row(static_cast<size_t>(6) * width) {}
  // A ring row's maps start at 64-byte boundaries, so that whole vectors are stored and loaded without
  // straddling cache lines (which costs a second access each), and an odd number of cache lines apart, so
  // that the 48 rows the column pass reads at once do not fall into the same few sets of the L1 cache (with
  // 256 floats, 1 KB, apart, they did, and the kernel ran 1.4-1.9x slower in a development timing).
  static size_t MapStride(int64_t width) {
    const size_t lines = (static_cast<size_t>(width - kTaps + 1) + kAlignFloats - 1) / kAlignFloats;
    return (lines | 1) * kAlignFloats;
  }
  float* ring() {
    const auto address = reinterpret_cast<uintptr_t>(ring_storage.data());
    return ring_storage.data() + (kAlignFloats - address / sizeof(float) % kAlignFloats) % kAlignFloats;
  }
  std::vector<float> ring_storage;
  std::vector<float> row;
};

// Vectors of 16, 8 and 4 floats (GCC's vector extensions), loaded and stored at any alignment: the SSIM
// kernel is written once over a vector type V, and each instruction-set variant instantiates it with its
// width. Written as explicit vectors rather than loops left to the auto-vectoriser, because that gave each of
// the column pass's 48 row reads its own pointer, which did not fit in registers: every load first reloaded
// its pointer from the stack, and the loads, not the arithmetic, bounded the kernel.
typedef float Floats16 __attribute__((vector_size(64), aligned(4)));
typedef float Floats8 __attribute__((vector_size(32), aligned(4)));
typedef float Floats4 __attribute__((vector_size(16), aligned(4)));

template <typename V>
constexpr int LanesOf() {
  return static_cast<int>(sizeof(V) / sizeof(float));
}

template <typename V>
inline __attribute__((always_inline)) V Load(const float* p) {
  if constexpr (std::is_same_v<V, float>) {
    return *p;
  } else {
    V v;
    __builtin_memcpy(&v, p, sizeof(V));
    return v;
  }
}

template <typename V>
inline __attribute__((always_inline)) void Store(float* p, V v) {
  if constexpr (std::is_same_v<V, float>) {
    *p = v;
  } else {
    __builtin_memcpy(p, &v, sizeof(V));
  }
}

// The Gaussian window over 11 values `step` floats apart from `p`, given the taps g[0..5] as vectors: the
// window is symmetric, so g[t] (p[t] + p[10 - t]) halves the multiplications, and the additions run on the
// FPU's adders, which multiply-adds leave idle on AMD's Zen cores (and on Intel's since Golden Cove).
template <typename V>
inline __attribute__((always_inline)) V Window(const float* p, size_t step, const V* g) {
  V sum = g[kHalf] * Load<V>(p + kHalf * step);
#pragma GCC unroll 5
  for (int t = 0; t < kHalf; ++t) sum += g[t] * (Load<V>(p + t * step) + Load<V>(p + (kTaps - 1 - t) * step));
  return sum;
}

// SSIM at one position from the four blurred maps there.
template <typename V>
inline __attribute__((always_inline)) V SsimValue(V mu_x, V mu_y, V e_squares, V e_xy) {
  const V mu_xy = mu_x * mu_y;
  const V mu_squares = mu_x * mu_x + mu_y * mu_y;
  // cov = E[xy] - mu_x mu_y; var_x + var_y = E[x^2 + y^2] - mu_x^2 - mu_y^2.
  return (2.f * mu_xy + kC1) * (2.f * (e_xy - mu_xy) + kC2) /
         ((mu_squares + kC1) * (e_squares - mu_squares + kC2));
}

// The sum of `count` values, in kLanes partial sums (vectorisable, a fixed order).
inline __attribute__((always_inline)) double RowSum(const float* values, int count) {
  float lanes[kLanes] = {0.f};
  int j = 0;
  for (; j + kLanes <= count; j += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += values[j + k];
  double total = 0.0;
  for (; j < count; ++j) total += values[j];
  for (int k = 0; k < kLanes; ++k) total += lanes[k];
  return total;
}

// The start of the vector after the one at j, when vectors of L floats cover [0, count): j + L, but count - L
// for the last, which may overlap the one before it (it writes the same values again); count when done.
template <int L>
inline __attribute__((always_inline)) int NextVector(int j, int count) {
  const int next = j + L;  // j <= count - L, so next <= count
  return next == count || next <= count - L ? next : count - L;
}

// Mean SSIM over the VALID windows of one channel of an H x W image whose pixels are `stride` floats apart,
// in vectors V of L floats (out_width >= L; float for narrower images). The body of ChannelSsim's
// instruction-set variants below (always inlined into each).
//
// Output rows are made two at a time, from the 12 row-filtered rows they need between them: each ring row is
// read once per two outputs, where one output at a time read 11 rows per output.
template <typename V>
inline __attribute__((always_inline)) double ChannelSsimBody(
    const float* x, const float* y, int height, int width, int stride, Scratch* scratch) {
  constexpr int L = LanesOf<V>();
  const int out_width = width - kTaps + 1;
  const int out_height = height - kTaps + 1;
  V g[kHalf + 1];  // the taps as vectors, kept in registers
  for (int t = 0; t <= kHalf; ++t) g[t] = V{} + Taps().weight[t];
  float* xs = scratch->row.data();  // strided (colour) rows are gathered here first
  float* ys = xs + width;
  float* squares = ys + width;
  float* products = squares + width;
  float* values = products + width;  // two output rows' SSIM values
  float* ring = scratch->ring();
  const size_t map_stride = Scratch::MapStride(width);
  const size_t slot_stride = kMaps * map_stride;

  double total = 0.0;
  for (int r = 0; r < height; ++r) {
    // Row r filtered along the row into ring slots r % 12 and r % 12 + 12: [4][out_width] each.
    const float* xr = x + static_cast<size_t>(r) * width * stride;
    const float* yr = y + static_cast<size_t>(r) * width * stride;
    const float* row_x = xr;
    const float* row_y = yr;
    if (stride == 1) {  // grey images: contiguous, so this loop vectorises
#pragma GCC ivdep
      for (int j = 0; j < width; ++j) {
        const float a = xr[j], b = yr[j];
        squares[j] = a * a + b * b;
        products[j] = a * b;
      }
    } else {
      for (int j = 0; j < width; ++j) {
        const float a = xr[static_cast<size_t>(j) * stride], b = yr[static_cast<size_t>(j) * stride];
        xs[j] = a;
        ys[j] = b;
        squares[j] = a * a + b * b;
        products[j] = a * b;
      }
      row_x = xs;
      row_y = ys;
    }
    float* out = ring + static_cast<size_t>(r % kRingRows) * slot_stride;
    float* twin = out + kRingRows * slot_stride;
    // A loop, not a lambda: GCC compiles lambdas without the enclosing function's target instruction set.
    for (int j = 0; j < out_width; j = NextVector<L>(j, out_width)) {
      const V filtered[kMaps] = {Window(row_x + j, 1, g), Window(row_y + j, 1, g), Window(squares + j, 1, g),
                                 Window(products + j, 1, g)};
      for (int m = 0; m < kMaps; ++m) {
        Store(out + m * map_stride + j, filtered[m]);
        Store(twin + m * map_stride + j, filtered[m]);
      }
    }
    if (r < kTaps - 1) continue;  // the first output row needs 11 filtered rows
    // Output rows i and i + 1 once row i + 11 is filtered (i even); a last single row when their count is odd.
    const bool pair = r >= kTaps && (r - kTaps) % 2 == 0;
    const bool last_single = !pair && r == height - 1 && out_height % 2 == 1;
    if (!pair && !last_single) continue;
    const int i = pair ? r - kTaps : r - (kTaps - 1);
    const float* first = ring + static_cast<size_t>(i % kRingRows) * slot_stride;  // rows i.. in order
    // Down the columns, then SSIM's formula.
    for (int j = 0; j < out_width; j = NextVector<L>(j, out_width)) {
      const float* p = first + j;
      Store(values + j, SsimValue(Window(p, slot_stride, g), Window(p + map_stride, slot_stride, g),
                                  Window(p + 2 * map_stride, slot_stride, g),
                                  Window(p + 3 * map_stride, slot_stride, g)));
      if (pair) {
        p += slot_stride;
        Store(values + out_width + j,
              SsimValue(Window(p, slot_stride, g), Window(p + map_stride, slot_stride, g),
                        Window(p + 2 * map_stride, slot_stride, g), Window(p + 3 * map_stride, slot_stride, g)));
      }
    }
    total += RowSum(values, out_width);
    if (pair) total += RowSum(values + out_width, out_width);
  }
  return total / (static_cast<double>(out_height) * out_width);
}

// The body in vectors V when the image is wide enough, else one float at a time.
template <typename V>
inline __attribute__((always_inline)) double ChannelSsimIn(const float* x, const float* y, int height,
                                                           int width, int stride, Scratch* scratch) {
  if (width - kTaps + 1 >= LanesOf<V>()) return ChannelSsimBody<V>(x, y, height, width, stride, scratch);
  return ChannelSsimBody<float>(x, y, height, width, stride, scratch);
}

// |x - y| (mean over channels) of one image into `heatmap`, then normalised to [0, 1] by its own minimum and
// maximum; all-zero when the difference is constant (no division by zero).
inline __attribute__((always_inline)) void MinmaxHeatmapBody(const float* x, const float* y, int64_t pixels,
                                                              int64_t channels, float* heatmap) {
  if (channels == 1) {
    for (int64_t p = 0; p < pixels; ++p) heatmap[p] = std::fabs(x[p] - y[p]);
  } else {
    for (int64_t p = 0; p < pixels; ++p) {
      float sum = 0.f;
      for (int64_t c = 0; c < channels; ++c) sum += std::fabs(x[p * channels + c] - y[p * channels + c]);
      heatmap[p] = sum / static_cast<float>(channels);
    }
  }
  // Minimum and maximum in kLanes independent lanes, which the compiler vectorises (one running minimum
  // is a serial chain), then across the lanes.
  float lanes_low[kLanes], lanes_high[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes_low[k] = lanes_high[k] = heatmap[0];
  int64_t p = 0;
  for (; p + kLanes <= pixels; p += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      lanes_low[k] = heatmap[p + k] < lanes_low[k] ? heatmap[p + k] : lanes_low[k];
      lanes_high[k] = heatmap[p + k] > lanes_high[k] ? heatmap[p + k] : lanes_high[k];
    }
  for (; p < pixels; ++p) {
    lanes_low[0] = std::min(lanes_low[0], heatmap[p]);
    lanes_high[0] = std::max(lanes_high[0], heatmap[p]);
  }
  float low = lanes_low[0], high = lanes_high[0];
  for (int k = 1; k < kLanes; ++k) {
    low = std::min(low, lanes_low[k]);
    high = std::max(high, lanes_high[k]);
  }
  const float range = std::max(high - low, kHeatmapEpsilon);
  for (int64_t p = 0; p < pixels; ++p) heatmap[p] = (heatmap[p] - low) / range;
}

// The checks both ops make of their two [N, H, W, C] batches.
absl::Status CheckBatches(const char* op, const Tensor& x, const Tensor& y, int64_t min_side) {
  if (x.dims() != 4)
    return absl::InvalidArgumentError(std::string(op) + ": images must be [N, H, W, C], got shape " +
                                      x.shape().DebugString());
  if (x.shape() != y.shape())
    return absl::InvalidArgumentError(std::string(op) + ": both batches must have one shape, got " +
                                      x.shape().DebugString() + " and " + y.shape().DebugString());
  if (x.dim_size(1) < min_side || x.dim_size(2) < min_side || x.dim_size(3) < 1)
    return absl::InvalidArgumentError(std::string(op) + ": images must be at least " +
                                      std::to_string(min_side) + "x" + std::to_string(min_side) +
                                      " with a channel, got " + x.shape().DebugString());
  return absl::OkStatus();
}

// ChannelSsim compiled for AVX-512 with 512-bit vectors, and for AVX2 + FMA (the slowest line PCs). One
// function per instruction set, chosen at run time: GCC's target_clones ran the same body at 12.7 ms per
// 60 patches on one core against 9.2 ms (a development timing, AMD EPYC Zen 5).
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512"))) double
ChannelSsimAvx512(const float* x, const float* y, int height, int width, int stride, Scratch* scratch) {
  return ChannelSsimIn<Floats16>(x, y, height, width, stride, scratch);
}

__attribute__((target("avx2,fma"))) double ChannelSsimAvx2(const float* x, const float* y, int height,
                                                            int width, int stride, Scratch* scratch) {
  return ChannelSsimIn<Floats8>(x, y, height, width, stride, scratch);
}

double ChannelSsimBaseline(const float* x, const float* y, int height, int width, int stride,
                           Scratch* scratch) {
  return ChannelSsimIn<Floats4>(x, y, height, width, stride, scratch);
}

using ChannelSsimFunction = double (*)(const float*, const float*, int, int, int, Scratch*);

enum class InstructionSet { kAvx512, kAvx2, kBaseline };

// The kernels' variant for this process: this CPU's widest vectors, capped by TFAD_KERNELS_MAX_ISA (avx2 or
// baseline; as ONEDNN_MAX_CPU_ISA caps oneDNN), so the slow line PCs' AVX2 path can be tested and timed on an
// AVX-512 machine. `error` names a value it does not know.
struct KernelVariant {
  InstructionSet isa;
  std::string error;
};

KernelVariant ChooseVariant() {
  __builtin_cpu_init();
  InstructionSet isa = InstructionSet::kBaseline;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    isa = InstructionSet::kAvx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    isa = InstructionSet::kAvx2;
  const char* cap = std::getenv("TFAD_KERNELS_MAX_ISA");
  std::string value = cap == nullptr ? "" : cap;
  std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::tolower(c); });
  if (value.empty() || value == "avx512") return {isa, ""};
  if (value == "avx2") return {isa == InstructionSet::kAvx512 ? InstructionSet::kAvx2 : isa, ""};
  if (value == "baseline") return {InstructionSet::kBaseline, ""};
  return {isa, "TFAD_KERNELS_MAX_ISA=" + std::string(cap) + ": expected avx512, avx2 or baseline"};
}

const KernelVariant& Variant() {
  static const KernelVariant variant = ChooseVariant();
  return variant;
}

// MinmaxHeatmap for the same instruction sets: its loops are mostly bound by memory, yet a 60-patch product's
// heatmaps took 1.9 ms instead of 2.5 (a development timing, AMD EPYC Zen 5).
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,prefer-vector-width=512"))) void
MinmaxHeatmapAvx512(const float* x, const float* y, int64_t pixels, int64_t channels, float* heatmap) {
  MinmaxHeatmapBody(x, y, pixels, channels, heatmap);
}

__attribute__((target("avx2,fma"))) void MinmaxHeatmapAvx2(const float* x, const float* y, int64_t pixels,
                                                             int64_t channels, float* heatmap) {
  MinmaxHeatmapBody(x, y, pixels, channels, heatmap);
}

void MinmaxHeatmapBaseline(const float* x, const float* y, int64_t pixels, int64_t channels, float* heatmap) {
  MinmaxHeatmapBody(x, y, pixels, channels, heatmap);
}

using MinmaxHeatmapFunction = void (*)(const float*, const float*, int64_t, int64_t, float*);

class MinmaxHeatmapOp : public OpKernel {
 public:
  explicit MinmaxHeatmapOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& y = context->input(1);
    OP_REQUIRES_OK(context, CheckBatches("TfadMinmaxHeatmap", x, y, 1));
    const int64_t count = x.dim_size(0), height = x.dim_size(1), width = x.dim_size(2);
    const int64_t channels = x.dim_size(3), pixels = height * width;
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({count, height, width}), &output));
    const float* xp = x.flat<float>().data();
    const float* yp = y.flat<float>().data();
    float* heatmaps = output->flat<float>().data();
    OP_REQUIRES(context, Variant().error.empty(),
                absl::InvalidArgumentError("TfadMinmaxHeatmap: " + Variant().error));
    const MinmaxHeatmapFunction minmax_heatmap = Variant().isa == InstructionSet::kAvx512 ? MinmaxHeatmapAvx512
                                                 : Variant().isa == InstructionSet::kAvx2 ? MinmaxHeatmapAvx2
                                                                                          : MinmaxHeatmapBaseline;
    auto work = [&](int64_t begin, int64_t end) {
      for (int64_t image = begin; image < end; ++image)
        minmax_heatmap(xp + image * pixels * channels, yp + image * pixels * channels, pixels, channels,
                      heatmaps + image * pixels);
    };
    const auto* threads = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(threads->num_threads, threads->workers, count, pixels * (4 + 3 * channels), work);
  }
};

class SsimOp : public OpKernel {
 public:
  explicit SsimOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& y = context->input(1);
    OP_REQUIRES_OK(context, CheckBatches("TfadSsim", x, y, kTaps));
    const int64_t count = x.dim_size(0), height = x.dim_size(1), width = x.dim_size(2);
    const int64_t channels = x.dim_size(3);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({count}), &output));
    if (count == 0) return;

    const float* xp = x.flat<float>().data();
    const float* yp = y.flat<float>().data();
    const int64_t image_size = height * width * channels;
    std::vector<double> per_channel(static_cast<size_t>(count * channels));
    OP_REQUIRES(context, Variant().error.empty(), absl::InvalidArgumentError("TfadSsim: " + Variant().error));
    const ChannelSsimFunction channel_ssim = Variant().isa == InstructionSet::kAvx512 ? ChannelSsimAvx512
                                             : Variant().isa == InstructionSet::kAvx2 ? ChannelSsimAvx2
                                                                                      : ChannelSsimBaseline;
    auto work = [&](int64_t begin, int64_t end) {
      Scratch scratch(width);
      for (int64_t k = begin; k < end; ++k) {
        const int64_t image = k / channels, channel = k % channels;
        per_channel[k] = channel_ssim(xp + image * image_size + channel, yp + image * image_size + channel,
                                     static_cast<int>(height), static_cast<int>(width),
                                     static_cast<int>(channels), &scratch);
      }
    };
    // About 200 floating-point operations per pixel: the cost the sharder weighs against its threads.
    const auto* threads = context->device()->tensorflow_cpu_worker_threads();
    ::tensorflow::Shard(threads->num_threads, threads->workers, count * channels, height * width * 200, work);

    auto ssim = output->flat<float>();
    for (int64_t image = 0; image < count; ++image) {
      double sum = 0.0;
      for (int64_t channel = 0; channel < channels; ++channel) sum += per_channel[image * channels + channel];
      ssim(image) = static_cast<float>(sum / channels);
    }
  }
};

}  // namespace

// The shape of both ops' two [N, H, W, C] inputs, which must agree (the shape functions' check).
absl::Status BatchesShape(::tensorflow::shape_inference::InferenceContext* context,
                          ::tensorflow::shape_inference::ShapeHandle* both) {
  ::tensorflow::shape_inference::ShapeHandle x, y;
  TF_RETURN_IF_ERROR(context->WithRank(context->input(0), 4, &x));
  TF_RETURN_IF_ERROR(context->WithRank(context->input(1), 4, &y));
  return context->Merge(x, y, both);
}

}  // namespace tfad

REGISTER_OP("TfadSsim")
    .Input("x: float")
    .Input("y: float")
    .Output("ssim: float")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* context) {
      ::tensorflow::shape_inference::ShapeHandle both;
      TF_RETURN_IF_ERROR(tfad::BatchesShape(context, &both));
      context->set_output(0, context->Vector(context->Dim(both, 0)));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Per-image SSIM [N] of two [N, H, W, C] float batches in [0, 1]: tf.image.ssim with max_val=1, an 11x11
Gaussian window of sigma 1.5, the VALID region, mean over pixels and channels.
)doc");

REGISTER_OP("TfadMinmaxHeatmap")
    .Input("x: float")
    .Input("y: float")
    .Output("heatmap: float")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* context) {
      ::tensorflow::shape_inference::ShapeHandle both;
      TF_RETURN_IF_ERROR(tfad::BatchesShape(context, &both));
      context->set_output(0, context->MakeShape({context->Dim(both, 0), context->Dim(both, 1),
                                                 context->Dim(both, 2)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Per-image heatmap [N, H, W] of two [N, H, W, C] float batches: |x - y| (mean over channels) min-max
normalised to [0, 1] by the image's own range (all zero when the difference is constant).
)doc");

REGISTER_KERNEL_BUILDER(Name("TfadSsim").Device(::tensorflow::DEVICE_CPU), tfad::SsimOp);
REGISTER_KERNEL_BUILDER(Name("TfadMinmaxHeatmap").Device(::tensorflow::DEVICE_CPU), tfad::MinmaxHeatmapOp);
