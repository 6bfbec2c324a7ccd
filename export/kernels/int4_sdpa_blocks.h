// Building blocks of int4_sdpa.cpp (one translation unit includes this): a
// vectorizable exp, dot products, the INT4 row unpack and the value accumulation.

#pragma once

#include "int4_kv_common.h"

#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <limits>
#include <vector>

namespace edgevlm {
namespace native {
namespace {

using executorch::runtime::Error;

constexpr int64_t kBlock = 64; // positions per softmax block: the score tile stays in L1
constexpr int64_t kRowTile = 16; // query rows sharing one unpack of a cache row
constexpr int64_t kMinSplit = 256; // fewest positions worth a thread of their own
constexpr int64_t kMinLaneRows = 4; // fewer rows per tile: dot products beat mostly-empty lanes
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(x) for x <= 0 (scores minus their running max): Cephes' expf polynomial, branch-free so the
// loops calling it vectorize (libm's expf does not without -ffast-math). Below about -87 the
// exponent field clamps to 0, so the result is exactly 0 (and exp(-inf) = 0).
inline float exp_nonpos(float x) {
  const float xc = std::max(x, -100.0f);
  // n = round(x / ln 2) by the 1.5 * 2^23 trick: floorf would not vectorize here.
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = std::max(static_cast<int32_t>(n) + 127, 0) << 23;
  return p * __builtin_bit_cast(float, bits); // memcpy here blocks vectorization
}

// Dot product of n floats. With n a multiple of 16 known at compile time this becomes a few
// vector FMAs into 16 lanes and a shuffle tree (an `omp simd` reduction got a serial epilogue).
template <int64_t kN>
inline float dot(const float* __restrict__ a, const float* __restrict__ b, int64_t n) {
  if constexpr (kN > 0 && kN % 16 == 0) {
    float acc[16] = {};
    for (int64_t i = 0; i < kN; i += 16) {
      for (int64_t l = 0; l < 16; ++l) {
        acc[l] += a[i + l] * b[i + l];
      }
    }
    float r8[8], r4[4]; // written out: GCC kept a rolled loop through memory
    for (int64_t l = 0; l < 8; ++l) {
      r8[l] = acc[l] + acc[l + 8];
    }
    for (int64_t l = 0; l < 4; ++l) {
      r4[l] = r8[l] + r8[l + 4];
    }
    acc[0] = (r4[0] + r4[2]) + (r4[1] + r4[3]);
    return acc[0];
  } else {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) {
      s += a[i] * b[i];
    }
    return s;
  }
}

// One cache row's codes -> c * scale_g in the permuted order; zero_g -> zeros.
template <int64_t kHalfGroup>
inline void unpack_row(
    const uint8_t* __restrict__ codes,
    const Half* scale,
    const Half* zero,
    int64_t groups,
    int64_t half_group,
    float* __restrict__ values,
    float* __restrict__ zeros) {
  const int64_t hg = kHalfGroup > 0 ? kHalfGroup : half_group;
  for (int64_t g = 0; g < groups; ++g) {
    const float s = half_to_float(scale + g);
    zeros[g] = half_to_float(zero + g);
    const uint8_t* c = codes + g * hg;
    float* lo = values + 2 * g * hg;
    float* hi = lo + hg;
    for (int64_t j = 0; j < hg; ++j) {
      lo[j] = static_cast<float>(c[j] & 15) * s;
      hi[j] = static_cast<float>(c[j] >> 4) * s;
    }
  }
}

struct Shape {
  int64_t B, T, H, D, S, Hkv, groups, half_group, rep, start;
};

struct Cache {
  const uint8_t* codes;
  const Half* scale;
  const Half* zero;
};

// Softmax state of one query row over a range of positions: running max m, denominator l and the
// unnormalized output (natural element order).
struct RowResult {
  float m, l;
  float* out;
};

// acc[d] += sum_j p[j * stride] * values[j][d] and zacc[g] += sum_j p[j * stride] * zeros[j][g]
// over n unpacked cache rows. With D a multiple of 16 known at compile time, acc lives in
// registers (GNU vector type) for the whole block instead of a load and store per row.
template <int64_t kD>
inline void accumulate_values(
    float* __restrict__ acc,
    float* __restrict__ zacc,
    const float* __restrict__ values,
    const float* __restrict__ zeros,
    const float* __restrict__ p,
    int64_t stride,
    int64_t n,
    int64_t D,
    int64_t NG) {
  if constexpr (kD > 0 && kD % 16 == 0) {
    typedef float V16 __attribute__((vector_size(64), aligned(sizeof(float))));
    constexpr int64_t kV = kD / 16;
    V16 a[kV];
    for (int64_t c = 0; c < kV; ++c) {
      a[c] = *reinterpret_cast<const V16*>(acc + 16 * c);
    }
    for (int64_t j = 0; j < n; ++j) {
      const float w = p[j * stride];
      for (int64_t c = 0; c < kV; ++c) {
        a[c] += *reinterpret_cast<const V16*>(values + j * kD + 16 * c) * w;
      }
    }
    for (int64_t c = 0; c < kV; ++c) {
      *reinterpret_cast<V16*>(acc + 16 * c) = a[c];
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      const float w = p[j * stride];
      for (int64_t d = 0; d < D; ++d) {
        acc[d] += w * values[j * D + d];
      }
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const float w = p[j * stride];
    for (int64_t g = 0; g < NG; ++g) {
      zacc[g] += w * zeros[j * NG + g];
    }
  }
}

} // namespace
} // namespace native
} // namespace edgevlm
