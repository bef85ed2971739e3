// The reconstruction families' score kernels, each one fused CPU pass per image (tfad.scoring.native):
//
// TfadSsim: per-image SSIM of two NHWC float batches.
// The same definition as tf.image.ssim(max_val=1, filter_size=11, filter_sigma=1.5): an 11x11 Gaussian
// window, the VALID region, mean over pixels and channels. As TensorFlow ops, the four blurred maps, their
// two passes and SSIM's formula are a dozen kernels that each stream a product's maps through memory; here
// each image is read once and its maps never leave the core's caches: a ring of the last 11 row-filtered
// rows (4 maps x 11 rows x (W - 10) floats, 43 KB for 256-wide patches) feeds the column pass, the formula
// and the mean in one loop.
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
constexpr double kSigma = 1.5;     // its filter_sigma
constexpr float kC1 = 0.01f * 0.01f;  // (k1 L)^2, L = 1
constexpr float kC2 = 0.03f * 0.03f;  // (k2 L)^2
constexpr int kMaps = 4;           // blurred x, y, x^2 + y^2, xy (var_x + var_y is only needed as a sum)
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

// Scratch of one worker: the ring of row-filtered rows, and one row each of x, y, x^2 + y^2, xy and the SSIM
// values.
struct Scratch {
  explicit Scratch(int64_t width)
      : ring(static_cast<size_t>(kTaps) * kMaps * (width - kTaps + 1)), row(static_cast<size_t>(5) * width) {}
  std::vector<float> ring;
  std::vector<float> row;
};

// Mean SSIM over the VALID windows of one channel of an H x W image whose pixels are `stride` floats apart.
// The body of ChannelSsim's instruction-set variants below (always inlined into each).
inline __attribute__((always_inline)) double ChannelSsimBody(
    const float* x, const float* y, int height, int width, int stride, Scratch* scratch) {
  const int out_width = width - kTaps + 1;
  const int out_height = height - kTaps + 1;
  float g[kTaps];  // a local copy: the compiler keeps the taps in registers (no aliasing with the outputs)
  for (int t = 0; t < kTaps; ++t) g[t] = Taps().weight[t];
  float* xs = scratch->row.data();
  float* ys = xs + width;
  float* squares = ys + width;
  float* products = squares + width;
  float* values = products + width;
  float* ring = scratch->ring.data();

  double total = 0.0;
  const float* rows[kTaps];
  for (int r = 0; r < height; ++r) {
    // Row r filtered along the row into ring slot r % 11: [4][out_width].
    const float* xr = x + static_cast<size_t>(r) * width * stride;
    const float* yr = y + static_cast<size_t>(r) * width * stride;
    if (stride == 1) {  // grey images: contiguous, so this loop vectorises
#pragma GCC ivdep
      for (int j = 0; j < width; ++j) {
        const float a = xr[j], b = yr[j];
        xs[j] = a;
        ys[j] = b;
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
    }
    float* out = ring + static_cast<size_t>(r % kTaps) * kMaps * out_width;
#pragma GCC ivdep
    for (int j = 0; j < out_width; ++j) {
      float mx = 0.f, my = 0.f, msq = 0.f, mxy = 0.f;
#pragma GCC unroll 11
      for (int t = 0; t < kTaps; ++t) {
        mx += g[t] * xs[j + t];
        my += g[t] * ys[j + t];
        msq += g[t] * squares[j + t];
        mxy += g[t] * products[j + t];
      }
      out[j] = mx;
      out[out_width + j] = my;
      out[2 * out_width + j] = msq;
      out[3 * out_width + j] = mxy;
    }
    if (r < kTaps - 1) continue;  // the first output row needs 11 filtered rows
    const int i = r - (kTaps - 1);
    for (int t = 0; t < kTaps; ++t) rows[t] = ring + static_cast<size_t>((i + t) % kTaps) * kMaps * out_width;
    // Down the columns, then SSIM's formula, for output row i.
#pragma GCC ivdep
    for (int j = 0; j < out_width; ++j) {
      float mu_x = 0.f, mu_y = 0.f, e_squares = 0.f, e_xy = 0.f;
#pragma GCC unroll 11
      for (int t = 0; t < kTaps; ++t) {
        const float* p = rows[t] + j;
        mu_x += g[t] * p[0];
        mu_y += g[t] * p[out_width];
        e_squares += g[t] * p[2 * out_width];
        e_xy += g[t] * p[3 * out_width];
      }
      const float mu_xy = mu_x * mu_y;
      const float mu_squares = mu_x * mu_x + mu_y * mu_y;
      // cov = E[xy] - mu_x mu_y; var_x + var_y = E[x^2 + y^2] - mu_x^2 - mu_y^2.
      values[j] = (2.f * mu_xy + kC1) * (2.f * (e_xy - mu_xy) + kC2) /
                  ((mu_squares + kC1) * (e_squares - mu_squares + kC2));
    }
    float lanes[kLanes] = {0.f};
    int j = 0;
    for (; j + kLanes <= out_width; j += kLanes)
      for (int k = 0; k < kLanes; ++k) lanes[k] += values[j + k];
    double row_total = 0.0;
    for (; j < out_width; ++j) row_total += values[j];
    for (int k = 0; k < kLanes; ++k) row_total += lanes[k];
    total += row_total;
  }
  return total / (static_cast<double>(out_height) * out_width);
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
  return ChannelSsimBody(x, y, height, width, stride, scratch);
}

__attribute__((target("avx2,fma"))) double ChannelSsimAvx2(const float* x, const float* y, int height,
                                                            int width, int stride, Scratch* scratch) {
  return ChannelSsimBody(x, y, height, width, stride, scratch);
}

double ChannelSsimBaseline(const float* x, const float* y, int height, int width, int stride,
                           Scratch* scratch) {
  return ChannelSsimBody(x, y, height, width, stride, scratch);
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
