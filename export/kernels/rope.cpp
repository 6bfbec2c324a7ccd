// edgevlm::rope.out: rotary position embedding of the new query or key rows, optionally followed by
// the orthonormal Hadamard rotation the INT4 cache applies to both (export/rope_op.py).
//
//   x float32 [B, T, H, D] at positions start_pos .. start_pos + T - 1;
//   cos, sin float32 [S, D]: the model's own rotary tables for every cache position;
//   y = x * cos[p] + rotate_half(x) * sin[p], rotate_half(x) = cat(-x[D/2:], x[:D/2]);
//   out = y H when hadamard, else y: H block-diagonal, orthonormal Sylvester blocks of the largest
//   power of two dividing D (the whole head for 64 / 128; 5 blocks of 16 for an 80-dim head).
// As XNNPACK graph ops this was 5 ops per tensor per layer (two multiplies, the rotate_half and
// Hadamard fully-connected layers, an add), and each op of a decode step costs XNNPACK about a
// microsecond of setup whatever its size; here it is one pass over the row.

#include "int4_kv_common.h"

#include <executorch/runtime/kernel/thread_parallel_interface.h>


namespace edgevlm {
namespace native {
namespace {

using executorch::runtime::Error;

// In-place fast Walsh-Hadamard transform of n values, scaled to the orthonormal matrix.
void hadamard_in_place(float* y, int64_t n, float norm) {
  for (int64_t len = 1; len < n; len *= 2) {
    for (int64_t i = 0; i < n; i += 2 * len) {
      for (int64_t j = i; j < i + len; ++j) {
        const float a = y[j], b = y[j + len];
        y[j] = a + b;
        y[j + len] = a - b;
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    y[i] *= norm;
  }
}

} // namespace

Tensor& rope_out(
    KernelRuntimeContext& ctx,
    const Tensor& x,
    const Tensor& cos,
    const Tensor& sin,
    const int64_t start_pos,
    const bool hadamard,
    Tensor& out) {
  ET_KERNEL_CHECK_MSG(
      ctx, x.scalar_type() == ScalarType::Float && x.dim() == 4,
      InvalidArgument, out, "rope: x must be float32 [B, T, H, D]");
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
  ET_KERNEL_CHECK_MSG(
      ctx, cos.scalar_type() == ScalarType::Float && sin.scalar_type() == ScalarType::Float &&
          cos.dim() == 2 && sin.dim() == 2 && cos.size(1) == D && sin.size(1) == D &&
          cos.size(0) == sin.size(0),
      InvalidArgument, out, "rope: cos and sin must be float32 [S, D] with x's head dim");
  ET_KERNEL_CHECK_MSG(
      ctx, D % 2 == 0, InvalidArgument, out, "rope: head dim must be even");
  ET_KERNEL_CHECK_MSG(
      ctx, start_pos >= 0 && start_pos + T <= cos.size(0), InvalidArgument, out,
      "rope: start_pos + new rows exceeds the rotary table");
  ET_KERNEL_CHECK_MSG(
      ctx, executorch::runtime::resize_tensor(out, x.sizes()) == Error::Ok,
      InvalidArgument, out, "rope: cannot resize out to the shape of x");

  const float* src = x.const_data_ptr<float>();
  const float* cos_table = cos.const_data_ptr<float>();
  const float* sin_table = sin.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  const int64_t half = D / 2;
  const int64_t block = D & -D; // largest power of two dividing D
  const float norm = 1.0f / std::sqrt(static_cast<float>(block));
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t t = (row / H) % T;
      const float* c = cos_table + (start_pos + t) * D;
      const float* s = sin_table + (start_pos + t) * D;
      const float* in = src + row * D;
      float* y = dst + row * D;
      for (int64_t i = 0; i < half; ++i) {
        y[i] = in[i] * c[i] - in[i + half] * s[i];
        y[i + half] = in[i + half] * c[i + half] + in[i] * s[i + half];
      }
      if (hadamard) {
        for (int64_t b = 0; b < D; b += block) {
          hadamard_in_place(y + b, block, norm);
        }
      }
    }
  };
  const int64_t n_rows = B * T * H;
  if (n_rows < 256) { // a decode step's handful of heads: waking the pool costs more than the work
    rows(0, n_rows);
    return out;
  }
  const bool ok = executorch::extension::parallel_for(0, n_rows, 64, rows);
  ET_KERNEL_CHECK_MSG(ctx, ok, Internal, out, "rope: parallel_for failed");
  return out;
}

} // namespace native
} // namespace edgevlm

EXECUTORCH_LIBRARY(edgevlm, "rope.out", edgevlm::native::rope_out);
