// edgevlm::int4_update_cache.out: quantize T new key or value rows to INT4 and write them into the
// packed cache at start_pos, in place (the INT4 counterpart of llama::update_cache).
//
// Format (export/kv_cache.py `quantize`, reproduced bit for bit): per group of G head-dim
// elements, lo = min, scale = max((max - lo) / 15, 1e-8), both rounded to fp16 first so that
// quantization and dequantization use the same numbers; code = clamp(round_half_even((x - lo) /
// scale), 0, 15); element 2j in the low nibble of byte j, 2j+1 in the high one.
//   value float32 [B, T, Hkv, D]; codes uint8 [B, S, Hkv, D/2]; scale, zero float16 [B, S, Hkv, D/G].
// Doing this in one kernel keeps ~20 small quantize ops per cache per layer out of the program,
// and with them the XNNPACK partitions that formed a cycle through the cache.

#include "int4_kv_common.h"

namespace edgevlm {
namespace native {
namespace {

inline uint8_t code_of(float x, float lo, float scale) {
  const float q = std::nearbyint((x - lo) / scale); // default rounding: half to even, as torch.round
  if (q != q) {
    return 0; // 0/0 in a constant group whose scale underflowed fp16 (torch casts that NaN to 0)
  }
  return static_cast<uint8_t>(std::min(std::max(q, 0.0f), 15.0f));
}

} // namespace

Tensor& int4_update_cache_out(
    KernelRuntimeContext& ctx,
    const Tensor& value,
    Tensor& codes,
    Tensor& scale,
    Tensor& zero,
    const int64_t start_pos,
    Tensor& out) {
  ET_KERNEL_CHECK_MSG(
      ctx, value.scalar_type() == ScalarType::Float && value.dim() == 4,
      InvalidArgument, out, "int4_update_cache: value must be float32 [B, T, Hkv, D]");
  ET_KERNEL_CHECK_MSG(
      ctx, codes.scalar_type() == ScalarType::Byte && codes.dim() == 4,
      InvalidArgument, out, "int4_update_cache: codes must be uint8 [B, S, Hkv, D/2]");
  ET_KERNEL_CHECK_MSG(
      ctx, scale.scalar_type() == ScalarType::Half && zero.scalar_type() == ScalarType::Half &&
          scale.dim() == 4 && zero.dim() == 4,
      InvalidArgument, out, "int4_update_cache: scale and zero must be float16 [B, S, Hkv, D/G]");
  const int64_t B = value.size(0), T = value.size(1), Hkv = value.size(2), D = value.size(3);
  const int64_t S = codes.size(1), groups = scale.size(3);
  ET_KERNEL_CHECK_MSG(
      ctx, codes.size(0) == B && codes.size(2) == Hkv && codes.size(3) * 2 == D,
      InvalidArgument, out, "int4_update_cache: codes shape does not match value [B, T, Hkv, D]");
  ET_KERNEL_CHECK_MSG(
      ctx, groups > 0 && D % groups == 0 && (D / groups) % 2 == 0,
      InvalidArgument, out, "int4_update_cache: D must split into groups of an even size");
  for (int64_t i = 0; i < 4; ++i) {
    ET_KERNEL_CHECK_MSG(
        ctx, scale.size(i) == zero.size(i) && (i == 3 || scale.size(i) == codes.size(i)),
        InvalidArgument, out, "int4_update_cache: scale/zero shape does not match codes");
  }
  ET_KERNEL_CHECK_MSG(
      ctx, start_pos >= 0 && start_pos + T <= S, InvalidArgument, out,
      "int4_update_cache: start_pos + new rows exceeds the cache length");

  const int64_t G = D / groups;
  const float* src = value.const_data_ptr<float>();
  uint8_t* code_base = codes.mutable_data_ptr<uint8_t>();
  Half* scale_base = scale.mutable_data_ptr<Half>();
  Half* zero_base = zero.mutable_data_ptr<Half>();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < Hkv; ++h) {
        const float* row = src + ((b * T + t) * Hkv + h) * D;
        const int64_t slot = (b * S + start_pos + t) * Hkv + h;
        uint8_t* dst = code_base + slot * (D / 2);
        for (int64_t g = 0; g < groups; ++g) {
          const float* x = row + g * G;
          float lo = x[0], hi = x[0];
          for (int64_t i = 1; i < G; ++i) {
            lo = std::min(lo, x[i]);
            hi = std::max(hi, x[i]);
          }
          const float s = round_to_half(std::max((hi - lo) / 15.0f, 1e-8f), scale_base + slot * groups + g);
          const float z = round_to_half(lo, zero_base + slot * groups + g);
          for (int64_t i = 0; i < G; i += 2) {
            dst[(g * G + i) / 2] = static_cast<uint8_t>(code_of(x[i], z, s) + 16 * code_of(x[i + 1], z, s));
          }
        }
      }
    }
  }
  return out;
}

} // namespace native
} // namespace edgevlm

EXECUTORCH_LIBRARY(edgevlm, "int4_update_cache.out", edgevlm::native::int4_update_cache_out);
