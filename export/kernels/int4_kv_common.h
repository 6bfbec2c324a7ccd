// What both INT4 KV-cache kernels share: the ExecuTorch kernel headers, the tensor types, and the
// fp16 <-> fp32 conversions of the cache's scales and zeros (F16C when the target has it).

#pragma once

#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/kernel/kernel_includes.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace edgevlm {
namespace native {
namespace {

using executorch::aten::Half;
using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::KernelRuntimeContext;

inline float half_to_float(const Half* h) {
#if defined(__F16C__)
  uint16_t bits;
  std::memcpy(&bits, h, sizeof(bits));
  return _cvtsh_ss(bits); // one instruction; Half's bit-twiddling conversion is ~10x slower
#else
  return static_cast<float>(*h);
#endif
}

// float -> fp16 -> float with round-to-nearest-even, as torch's .half() does.
inline float round_to_half(float x, Half* stored) {
#if defined(__F16C__)
  const uint16_t bits = _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT);
  std::memcpy(stored, &bits, sizeof(bits));
  return _cvtsh_ss(bits);
#else
  *stored = Half(x);
  return static_cast<float>(*stored);
#endif
}

} // namespace
} // namespace native
} // namespace edgevlm
