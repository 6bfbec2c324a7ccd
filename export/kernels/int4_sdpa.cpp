// edgevlm::int4_sdpa.out: causal grouped-query attention read straight from an INT4 KV cache.
//
// Cache layout (export/kv_cache.py, sequence-major like llama::update_cache):
//   codes uint8 [B, S, Hkv, D/2], element 2j in the low nibble of byte j, 2j+1 in the high one;
//   scale, zero float16 [B, S, Hkv, D/G]; value = code * scale + zero.
// Query t (absolute position start_pos + t) attends to cache positions 0 .. start_pos + t.
//
// Layout of the work: the query rows (t, head) that share one kv head are processed together in
// tiles of up to kRowTile rows, so each cache row is unpacked once per tile, not once per query
// head. Per cache row (group algebra: the scale and zero of a group factor out of its sums):
//   q.k = sum_i q_i * (c_i * scale_g) + sum_g zero_g * qsum_g   (qsum_g = sum of q over group g)
//   out += p * (c_i * scale_g) per element, and p * zero_g per group, kept apart until the end.
// Codes are unpacked in a permuted order (per group: the G/2 low nibbles, then the G/2 high ones)
// so the unpack is two contiguous loops; the queries are permuted the same way once and the
// output permuted back once. Scores are vectorized across the tile's query rows (GQA heads and
// prefill tokens), values across the head dim. Softmax is online over blocks of kBlock positions.
// When there are fewer (batch, kv head, row tile) items than threads, positions are split too
// (flash-decoding) and the partial softmax states merged at the end.

#include "int4_sdpa_blocks.h"

namespace edgevlm {
namespace native {
namespace {

// Attention of rows [r0, r1) of kv head hk of batch b (row r = t * rep + i: query head hk*rep + i
// of token t) over cache positions [p0, p1), each row clipped to its causal end.
// kD / kG: head dim and group size when known at compile time (0: read from sh), so the inner
// loops have constant trip counts and unroll into whole vectors.
// kLanes: how scores are computed. 8 or 16: vectorized across the tile's query rows (lane r = row
// r), several positions at a time: one broadcast key element times a vector of query elements,
// no horizontal sums; this is the GQA case (several query heads per kv head, or a prefill).
// 0: one dot product per (row, position), for tiles of fewer than kMinLaneRows rows.
template <int64_t kD, int64_t kG, int64_t kLanes>
void attend_tile(
    const Shape& sh,
    const float* q,
    Cache k,
    Cache v,
    float sm_scale,
    int64_t b,
    int64_t hk,
    int64_t r0,
    int64_t r1,
    int64_t p0,
    int64_t p1,
    RowResult* results) {
  constexpr int64_t kHg = kG / 2;
  constexpr int64_t RL = kLanes > 0 ? kLanes : kRowTile; // lane stride of per-row arrays
  // Positions scored together: independent FMA chains (enough to cover the FMA latency), one
  // query load shared by all of them; 64 lanes' worth keeps them in 8 ymm / 4 zmm registers.
  constexpr int64_t PG = kLanes > 0 ? 64 / kLanes : 1;
  const int64_t D = kD > 0 ? kD : sh.D;
  const int64_t G = kG > 0 ? kG : 2 * sh.half_group;
  const int64_t NG = D / G, hg = G / 2;
  const int64_t nr = r1 - r0;
  std::vector<float> scratch(
      D * RL + NG * RL + nr * (D + NG) + kBlock * RL + kBlock * (D + NG));
  // Queries, permuted and scaled: [nr][D] for dot products, [D][RL] (row in the lane) otherwise.
  float* __restrict__ qbuf = scratch.data();
  float* __restrict__ qsum = qbuf + D * RL; // [NG][RL] sum of the permuted query over a group
  float* __restrict__ acc = qsum + NG * RL; // [nr][D] sum p * c * scale (permuted)
  float* __restrict__ zacc = acc + nr * D; // [nr][NG] sum p * zero
  float* __restrict__ sc = zacc + nr * NG; // [kBlock][RL] scores, then probabilities
  float* __restrict__ rows = sc + kBlock * RL; // [kBlock][D] unpacked cache rows
  float* __restrict__ zrows = rows + kBlock * D; // [kBlock][NG] their zeros
  float m[RL], l[RL];
  int32_t end[RL]; // causal end of each lane's row; 0 for padding lanes (always masked)

  for (int64_t i = 0; i < RL; ++i) {
    m[i] = kNegInf;
    l[i] = 0.0f;
    end[i] = 0;
  }
  for (int64_t i = 0; i < nr; ++i) {
    const int64_t r = r0 + i, t = r / sh.rep, h = hk * sh.rep + r % sh.rep;
    end[i] = static_cast<int32_t>(sh.start + t + 1);
    const float* qrow = q + ((b * sh.T + t) * sh.H + h) * D;
    for (int64_t g = 0; g < NG; ++g) {
      float s = 0.0f;
      for (int64_t j = 0; j < G; ++j) {
        // permuted index of element j of the group: even elements first, then odd ones
        const int64_t pj = (j & 1) ? hg + j / 2 : j / 2;
        const float x = qrow[g * G + j] * sm_scale;
        if (kLanes > 0) {
          qbuf[(g * G + pj) * RL + i] = x;
        } else {
          qbuf[i * D + g * G + pj] = x;
        }
        s += x;
      }
      qsum[g * RL + i] = s;
      zacc[i * NG + g] = 0.0f;
    }
    std::fill(acc + i * D, acc + (i + 1) * D, 0.0f);
  }

  const int64_t row_bytes = sh.Hkv * D / 2; // codes bytes per position (all kv heads)
  const int64_t row_groups = sh.Hkv * NG;
  const int64_t base_codes = b * sh.S * row_bytes + hk * D / 2;
  const int64_t base_groups = b * sh.S * row_groups + hk * NG;
  auto unpack = [&](const Cache& c, int64_t s, float* out, float* zeros) {
    unpack_row<kHg>(
        c.codes + base_codes + s * row_bytes,
        c.scale + base_groups + s * row_groups,
        c.zero + base_groups + s * row_groups,
        NG,
        hg,
        out,
        zeros);
  };

  for (int64_t s0 = p0; s0 < p1; s0 += kBlock) {
    const int64_t n = std::min(kBlock, p1 - s0);
    // Scores of the block, sc[j][lane].
    if constexpr (kLanes > 0) {
      for (int64_t j = 0; j < n; j += PG) {
        const int64_t np = std::min(PG, n - j);
        for (int64_t u = 0; u < PG; ++u) {
          if (u < np) {
            unpack(k, s0 + j + u, rows + u * D, zrows + u * NG);
          } else { // past the range: score zeros, masked below
            std::fill(rows + u * D, rows + (u + 1) * D, 0.0f);
            std::fill(zrows + u * NG, zrows + (u + 1) * NG, 0.0f);
          }
        }
        // GNU vector type (GCC and Clang, any target): left to itself, GCC vectorized these
        // loops along d and shuffled the lanes around.
        typedef float Lanes __attribute__((vector_size(sizeof(float) * RL), aligned(sizeof(float))));
        Lanes a[PG] = {};
        for (int64_t d = 0; d < D; ++d) {
          const Lanes qd = *reinterpret_cast<const Lanes*>(qbuf + d * RL);
          for (int64_t u = 0; u < PG; ++u) {
            a[u] += qd * rows[u * D + d];
          }
        }
        for (int64_t g = 0; g < NG; ++g) {
          const Lanes qs = *reinterpret_cast<const Lanes*>(qsum + g * RL);
          for (int64_t u = 0; u < PG; ++u) {
            a[u] += qs * zrows[u * NG + g];
          }
        }
        for (int64_t u = 0; u < np; ++u) {
          const int32_t pos = static_cast<int32_t>(s0 + j + u);
          float* out = sc + (j + u) * RL;
          *reinterpret_cast<Lanes*>(out) = a[u];
          for (int64_t r = 0; r < RL; ++r) {
            out[r] = pos < end[r] ? out[r] : kNegInf;
          }
        }
      }
    } else {
      for (int64_t j = 0; j < n; ++j) {
        const int64_t s = s0 + j;
        unpack(k, s, rows, zrows);
        for (int64_t i = 0; i < RL; ++i) {
          float score = kNegInf;
          if (i < nr && s < end[i]) {
            score = dot<kD>(qbuf + i * D, rows, D);
            for (int64_t g = 0; g < NG; ++g) {
              score += qsum[g * RL + i] * zrows[g];
            }
          }
          sc[j * RL + i] = score;
        }
      }
    }
    // Online softmax, all lanes at once; the running state is rescaled once per block.
    float m_new[RL], ref[RL], sum[RL];
    for (int64_t r = 0; r < RL; ++r) {
      m_new[r] = m[r];
      sum[r] = 0.0f;
    }
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t r = 0; r < RL; ++r) {
        m_new[r] = sc[j * RL + r] > m_new[r] ? sc[j * RL + r] : m_new[r];
      }
    }
    for (int64_t r = 0; r < RL; ++r) {
      ref[r] = m_new[r] == kNegInf ? 0.0f : m_new[r]; // rows with nothing yet: exp(-inf) = 0
    }
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t r = 0; r < RL; ++r) {
        const float p = exp_nonpos(sc[j * RL + r] - ref[r]);
        sc[j * RL + r] = p;
        sum[r] += p;
      }
    }
    for (int64_t i = 0; i < nr; ++i) {
      if (m_new[i] != m[i]) {
        const float alpha = std::exp(m[i] - m_new[i]); // 0 when m was -inf
        l[i] *= alpha;
        float* __restrict__ ai = acc + i * D;
        for (int64_t d = 0; d < D; ++d) {
          ai[d] *= alpha;
        }
        for (int64_t g = 0; g < NG; ++g) {
          zacc[i * NG + g] *= alpha;
        }
        m[i] = m_new[i];
      }
      l[i] += sum[i];
    }
    // Values of the block: unpack once, then each row sums over the block in registers.
    for (int64_t j = 0; j < n; ++j) {
      unpack(v, s0 + j, rows + j * D, zrows + j * NG);
    }
    for (int64_t i = 0; i < nr; ++i) {
      accumulate_values<kD>(acc + i * D, zacc + i * NG, rows, zrows, sc + i, RL, n, D, NG);
    }
  }

  // Fold the zero term in and undo the permutation.
  for (int64_t i = 0; i < nr; ++i) {
    const float* ai = acc + i * D;
    float* o = results[i].out;
    for (int64_t g = 0; g < NG; ++g) {
      const float z = zacc[i * NG + g];
      for (int64_t j = 0; j < hg; ++j) {
        o[g * G + 2 * j] = ai[g * G + j] + z;
        o[g * G + 2 * j + 1] = ai[g * G + hg + j] + z;
      }
    }
    results[i].m = m[i];
    results[i].l = l[i];
  }
}

using TileFn = void (*)(
    const Shape&,
    const float*,
    Cache,
    Cache,
    float,
    int64_t,
    int64_t,
    int64_t,
    int64_t,
    int64_t,
    int64_t,
    RowResult*);

template <int64_t kD, int64_t kG>
TileFn select_lanes(int64_t rows) {
  if (rows < kMinLaneRows) {
    return &attend_tile<kD, kG, 0>;
  }
  return rows <= 8 ? &attend_tile<kD, kG, 8> : &attend_tile<kD, kG, 16>;
}

// Specializations for the usual head dims and group sizes; anything else takes the generic loops.
TileFn select_tile(int64_t d, int64_t g, int64_t rows) {
#define EDGEVLM_TILE(D_, G_)                 \
  if (d == D_ && g == G_) {                  \
    return select_lanes<D_, G_>(rows);       \
  }
  EDGEVLM_TILE(64, 32)
  EDGEVLM_TILE(64, 64)
  EDGEVLM_TILE(128, 32)
  EDGEVLM_TILE(128, 64)
  EDGEVLM_TILE(128, 128)
#undef EDGEVLM_TILE
  return select_lanes<0, 0>(rows);
}

bool check_cache(
    KernelRuntimeContext& ctx,
    const char* name,
    const Tensor& codes,
    const Tensor& scale,
    const Tensor& zero,
    const Shape& sh) {
  ET_KERNEL_CHECK_MSG(
      ctx,
      codes.scalar_type() == ScalarType::Byte && codes.dim() == 4,
      InvalidArgument,
      false,
      "%s_codes must be uint8 [B, S, Hkv, D/2] (two 4-bit codes per byte), got dtype %d rank %zd",
      name,
      static_cast<int>(codes.scalar_type()),
      static_cast<ssize_t>(codes.dim()));
  ET_KERNEL_CHECK_MSG(
      ctx,
      codes.size(0) == sh.B && codes.size(1) == sh.S &&
          codes.size(2) == sh.Hkv && codes.size(3) == sh.D / 2,
      InvalidArgument,
      false,
      "%s_codes must be [B=%zd, S=%zd, Hkv=%zd, D/2=%zd], got [%zd, %zd, %zd, %zd]",
      name,
      static_cast<ssize_t>(sh.B),
      static_cast<ssize_t>(sh.S),
      static_cast<ssize_t>(sh.Hkv),
      static_cast<ssize_t>(sh.D / 2),
      static_cast<ssize_t>(codes.size(0)),
      static_cast<ssize_t>(codes.size(1)),
      static_cast<ssize_t>(codes.size(2)),
      static_cast<ssize_t>(codes.size(3)));
  const Tensor* params[2] = {&scale, &zero};
  const char* kinds[2] = {"scale", "zero"};
  for (int k = 0; k < 2; ++k) {
    const Tensor& p = *params[k];
    ET_KERNEL_CHECK_MSG(
        ctx,
        p.scalar_type() == ScalarType::Half && p.dim() == 4 &&
            p.size(0) == sh.B && p.size(1) == sh.S && p.size(2) == sh.Hkv &&
            p.size(3) == sh.groups,
        InvalidArgument,
        false,
        "%s_%s must be float16 [B=%zd, S=%zd, Hkv=%zd, D/G=%zd] like %s_scale",
        name,
        kinds[k],
        static_cast<ssize_t>(sh.B),
        static_cast<ssize_t>(sh.S),
        static_cast<ssize_t>(sh.Hkv),
        static_cast<ssize_t>(sh.groups),
        name);
    ET_KERNEL_CHECK_MSG(
        ctx,
        executorch::runtime::tensor_is_contiguous(p),
        InvalidArgument,
        false,
        "%s_%s must be contiguous",
        name,
        kinds[k]);
  }
  ET_KERNEL_CHECK_MSG(
      ctx,
      executorch::runtime::tensor_is_contiguous(codes),
      InvalidArgument,
      false,
      "%s_codes must be contiguous",
      name);
  return true;
}

} // namespace

Tensor& int4_sdpa_out(
    KernelRuntimeContext& ctx,
    const Tensor& q,
    const Tensor& k_codes,
    const Tensor& k_scale,
    const Tensor& k_zero,
    const Tensor& v_codes,
    const Tensor& v_scale,
    const Tensor& v_zero,
    int64_t start_pos,
    double scale,
    Tensor& out) {
  ET_KERNEL_CHECK_MSG(
      ctx,
      q.scalar_type() == ScalarType::Float && q.dim() == 4,
      InvalidArgument,
      out,
      "q must be float32 [B, T, H, D], got dtype %d rank %zd",
      static_cast<int>(q.scalar_type()),
      static_cast<ssize_t>(q.dim()));
  ET_KERNEL_CHECK_MSG(
      ctx,
      executorch::runtime::tensor_is_contiguous(q),
      InvalidArgument,
      out,
      "q must be contiguous");
  ET_KERNEL_CHECK_MSG(
      ctx,
      out.scalar_type() == ScalarType::Float,
      InvalidArgument,
      out,
      "out must be float32");
  ET_KERNEL_CHECK_MSG(
      ctx,
      k_codes.dim() == 4 && k_scale.dim() == 4 && k_scale.size(3) > 0,
      InvalidArgument,
      out,
      "k_codes and k_scale must be rank 4 [B, S, Hkv, *]");

  Shape sh;
  sh.B = q.size(0);
  sh.T = q.size(1);
  sh.H = q.size(2);
  sh.D = q.size(3);
  sh.S = k_codes.size(1);
  sh.Hkv = k_codes.size(2);
  sh.groups = k_scale.size(3);
  sh.start = start_pos;
  ET_KERNEL_CHECK_MSG(
      ctx,
      sh.D % sh.groups == 0 && (sh.D / sh.groups) % 2 == 0,
      InvalidArgument,
      out,
      "head dim %zd must split into %zd groups of an even size",
      static_cast<ssize_t>(sh.D),
      static_cast<ssize_t>(sh.groups));
  sh.half_group = sh.D / sh.groups / 2;
  ET_KERNEL_CHECK_MSG(
      ctx,
      sh.Hkv > 0 && sh.H % sh.Hkv == 0,
      InvalidArgument,
      out,
      "query heads %zd must be a multiple of kv heads %zd",
      static_cast<ssize_t>(sh.H),
      static_cast<ssize_t>(sh.Hkv));
  sh.rep = sh.H / sh.Hkv;
  if (!check_cache(ctx, "k", k_codes, k_scale, k_zero, sh) ||
      !check_cache(ctx, "v", v_codes, v_scale, v_zero, sh)) {
    return out;
  }
  ET_KERNEL_CHECK_MSG(
      ctx,
      start_pos >= 0 && start_pos + sh.T <= sh.S,
      InvalidArgument,
      out,
      "start_pos %zd + %zd new tokens exceeds the cache length %zd",
      static_cast<ssize_t>(start_pos),
      static_cast<ssize_t>(sh.T),
      static_cast<ssize_t>(sh.S));
  ET_KERNEL_CHECK_MSG(
      ctx,
      executorch::runtime::resize_tensor(out, q.sizes()) == Error::Ok,
      InvalidArgument,
      out,
      "cannot resize out to the shape of q");
  if (q.numel() == 0) {
    return out;
  }

  const float* qd = q.const_data_ptr<float>();
  float* od = out.mutable_data_ptr<float>();
  const Cache k{
      k_codes.const_data_ptr<uint8_t>(),
      k_scale.const_data_ptr<Half>(),
      k_zero.const_data_ptr<Half>()};
  const Cache v{
      v_codes.const_data_ptr<uint8_t>(),
      v_scale.const_data_ptr<Half>(),
      v_zero.const_data_ptr<Half>()};
  const float sm_scale = static_cast<float>(scale);
  const TileFn tile_fn = select_tile(sh.D, 2 * sh.half_group, std::min(sh.T * sh.rep, kRowTile));

  const int64_t rows = sh.T * sh.rep; // query rows per kv head
  const int64_t tiles = (rows + kRowTile - 1) / kRowTile;
  const int64_t items = sh.B * sh.Hkv * tiles;
  const int64_t context = sh.start + sh.T;
  const int64_t threads = executorch::extension::get_thread_count();
  int64_t splits = 1;
  if (items < threads) {
    splits = std::min(
        (threads + items - 1) / items, std::max<int64_t>(1, context / kMinSplit));
  }
  const int64_t chunk =
      ((context + splits - 1) / splits + kBlock - 1) / kBlock * kBlock;
  splits = (context + chunk - 1) / chunk;

  // Partial states, [B, T, H, splits], only when positions are split.
  std::vector<float> part_ml, part_out;
  if (splits > 1) {
    part_ml.resize(sh.B * sh.T * sh.H * splits * 2);
    part_out.resize(sh.B * sh.T * sh.H * splits * sh.D);
  }

  auto run_item = [&](int64_t item) {
    const int64_t split = item % splits;
    int64_t rest = item / splits;
    const int64_t tile = rest % tiles;
    rest /= tiles;
    const int64_t hk = rest % sh.Hkv, b = rest / sh.Hkv;
    const int64_t r0 = tile * kRowTile, r1 = std::min(rows, r0 + kRowTile);
    const int64_t tile_end = sh.start + (r1 - 1) / sh.rep + 1; // last row's causal end
    const int64_t p0 = split * chunk, p1 = std::min(tile_end, p0 + chunk);
    RowResult results[kRowTile];
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r / sh.rep, h = hk * sh.rep + r % sh.rep;
      const int64_t idx = (b * sh.T + t) * sh.H + h;
      results[r - r0].out = splits > 1
          ? part_out.data() + (idx * splits + split) * sh.D
          : od + idx * sh.D;
      results[r - r0].m = kNegInf;
      results[r - r0].l = 0.0f;
    }
    if (p0 < p1) {
      tile_fn(sh, qd, k, v, sm_scale, b, hk, r0, r1, p0, p1, results);
    } else {
      for (int64_t i = 0; i < r1 - r0; ++i) {
        std::fill(results[i].out, results[i].out + sh.D, 0.0f);
      }
    }
    for (int64_t r = r0; r < r1; ++r) {
      RowResult& res = results[r - r0];
      if (splits > 1) {
        const int64_t t = r / sh.rep, h = hk * sh.rep + r % sh.rep;
        const int64_t idx = (b * sh.T + t) * sh.H + h;
        part_ml[(idx * splits + split) * 2] = res.m;
        part_ml[(idx * splits + split) * 2 + 1] = res.l;
      } else {
        const float inv = 1.0f / res.l; // l >= 1: position 0 is always attended
        for (int64_t d = 0; d < sh.D; ++d) {
          res.out[d] *= inv;
        }
      }
    }
  };
  bool ok = executorch::extension::parallel_for(
      0, items * splits, 1, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          run_item(item);
        }
      });
  ET_KERNEL_CHECK_MSG(ctx, ok, Internal, out, "parallel_for failed");

  if (splits > 1) { // merge the split softmax states
    const int64_t n_rows = sh.B * sh.T * sh.H;
    ok = executorch::extension::parallel_for(
        0, n_rows, 64, [&](int64_t begin, int64_t end) {
          for (int64_t idx = begin; idx < end; ++idx) {
            const float* ml = part_ml.data() + idx * splits * 2;
            float m = kNegInf;
            for (int64_t s = 0; s < splits; ++s) {
              m = std::max(m, ml[2 * s]);
            }
            float* o = od + idx * sh.D;
            std::fill(o, o + sh.D, 0.0f);
            float l = 0.0f;
            for (int64_t s = 0; s < splits; ++s) {
              if (ml[2 * s + 1] == 0.0f) {
                continue;
              }
              const float w = std::exp(ml[2 * s] - m);
              l += w * ml[2 * s + 1];
              const float* po = part_out.data() + (idx * splits + s) * sh.D;
              for (int64_t d = 0; d < sh.D; ++d) {
                o[d] += w * po[d];
              }
            }
            const float inv = 1.0f / l;
            for (int64_t d = 0; d < sh.D; ++d) {
              o[d] *= inv;
            }
          }
        });
    ET_KERNEL_CHECK_MSG(ctx, ok, Internal, out, "parallel_for failed");
  }
  return out;
}

} // namespace native
} // namespace edgevlm

EXECUTORCH_LIBRARY(edgevlm, "int4_sdpa.out", edgevlm::native::int4_sdpa_out);
