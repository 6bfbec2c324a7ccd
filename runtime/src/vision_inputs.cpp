// The static vision encoder's host inputs for one slice: export/vision.py vision_inputs over
// preprocess/patches.py pad_slices and model/resampler.py's sincos tables, in float32 as numpy
// computes them.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "edgevlm/vision.h"

namespace edgevlm {

namespace {

// numpy's float32 np.sin / np.cos on every SIMD host with fused multiply-add (x86 AVX2 and AVX-512,
// ARM NEON; numpy 2.4 loops_trigonometric.dispatch.cpp simd_sincos_f32): Cody-Waite reduction by
// pi/2 in three parts, then the sine or cosine polynomial by quadrant. A libm sinf differs from it
// by an ulp on ~15% of arguments; with explicit fmaf it rounds the same on every platform. numpy
// takes libm past 117435.992 (sin) / 71476.0625 (cos); table angles stay below max_patches.
float numpy_sincos(float x, bool cosine) {
    if (std::fabs(x) > (cosine ? 71476.0625f : 117435.992f)) return cosine ? std::cos(x) : std::sin(x);
    constexpr float kTwoOverPi = 0x1.45f306p-1f, kRound = 0x1.8p23f;
    // rint(x * 2/pi) by the magic-number add; GCC (numpy's wheels) fuses that multiply-add
    const float quadrant = std::fma(x, kTwoOverPi, kRound) - kRound;
    float r = std::fma(quadrant, -0x1.921fb0p+00f, x);
    r = std::fma(quadrant, -0x1.5110b4p-22f, r);
    r = std::fma(quadrant, -0x1.846988p-48f, r);
    const float r2 = r * r;
    float cos_r = std::fma(0x1.98e616p-16f, r2, -0x1.6c06dcp-10f);
    cos_r = std::fma(cos_r, r2, 0x1.55553cp-05f);
    cos_r = std::fma(cos_r, r2, -0x1.000000p-01f);
    cos_r = std::fma(cos_r, r2, 1.0f);
    float sin_r = std::fma(0x1.7d3bbcp-19f, r2, -0x1.a06bbap-13f);
    sin_r = std::fma(sin_r, r2, 0x1.11119ap-07f);
    sin_r = std::fma(sin_r, r2, -0x1.555556p-03f);
    sin_r = std::fma(sin_r, r2, 0.0f);
    sin_r = std::fma(sin_r, r, r);
    const auto q = static_cast<int32_t>(quadrant) + (cosine ? 1 : 0);  // quadrant holds an integer
    const float value = (q & 1) == 0 ? sin_r : cos_r;
    return (q & 2) ? 0.0f - value : value;
}

// sincos_1d's omega for an embedding of `dim`: 1 / 10000 ** (i / (dim / 2)), each step in float32.
// The power is libm's powf, as numpy's float32 power on hosts without AVX-512 (glibc's and Android
// bionic's powf are both Arm's optimized-routines code). numpy on AVX-512 hosts takes SVML's powf16
// instead, an ulp away on ~5% of these: its tables differ from every other host's
// (tests/test_runtime_vision.py bounds the difference). Manifests carry the exporter's frequencies
// (preprocessing.resampler_pos.frequencies), so a runtime reading them matches the export host.
std::vector<float> frequencies(int dim) {
    std::vector<float> omega(dim / 2);
    const auto scale = static_cast<float>(dim / 2.0);
    for (size_t i = 0; i < omega.size(); ++i) {
        const float exponent = static_cast<float>(i) / scale;
        omega[i] = 1.0f / std::pow(10000.0f, exponent);
    }
    return omega;
}

// sincos_1d(dim, 0..count-1): row m = [sin(m * omega), cos(m * omega)]
std::vector<float> sincos_1d(int dim, int count, const std::vector<float>& omega) {
    const size_t half = omega.size();
    std::vector<float> out(static_cast<size_t>(count) * dim);
    for (int m = 0; m < count; ++m) {
        float* row = &out[static_cast<size_t>(m) * dim];
        for (size_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(m) * omega[i];
            row[i] = numpy_sincos(angle, false);
            row[half + i] = numpy_sincos(angle, true);
        }
    }
    return out;
}

}  // namespace

std::vector<float> sincos_2d(int embed_dim, int h, int w, const std::vector<float>& given) {
    if (embed_dim <= 0 || embed_dim % 4 != 0)
        throw VisionError("the resampler's embed_dim is " + std::to_string(embed_dim) +
                          ": its 2D sincos table needs a positive multiple of 4 (check the manifest's "
                          "preprocessing.resampler_pos.embed_dim)");
    const int half = embed_dim / 2;  // first half: the column index; second half: the row index
    if (!given.empty() && given.size() != static_cast<size_t>(half / 2))
        throw VisionError("the manifest's resampler_pos.frequencies holds " + std::to_string(given.size()) +
                          " values; embed_dim " + std::to_string(embed_dim) + " needs " + std::to_string(half / 2) +
                          ": re-export the folder");
    const std::vector<float> omega = given.empty() ? frequencies(half) : given;
    const std::vector<float> cols = sincos_1d(half, w, omega), rows = sincos_1d(half, h, omega);
    std::vector<float> out(static_cast<size_t>(h) * w * embed_dim);
    for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j) {
            float* dst = &out[(static_cast<size_t>(i) * w + j) * embed_dim];
            std::memcpy(dst, &cols[static_cast<size_t>(j) * half], half * sizeof(float));
            std::memcpy(dst + half, &rows[static_cast<size_t>(i) * half], half * sizeof(float));
        }
    return out;
}

VisionBatch vision_batch(const PatchRow& slice, int max_patches, int batch, int num_patches_per_side,
                         const ResamplerPositions& resampler, int patch_size) {
    const int h = slice.patches_h, w = slice.patches_w, p = patch_size, count = h * w;
    if (h <= 0 || w <= 0 || p <= 0)
        throw VisionError("a slice of " + std::to_string(h) + "x" + std::to_string(w) + " patches of " +
                          std::to_string(p) + " pixels: nothing to encode");
    if (slice.values.size() != static_cast<size_t>(3) * p * count * p)
        throw VisionError("the slice holds " + std::to_string(slice.values.size()) + " values, not the 3 x " +
                          std::to_string(p) + " x " + std::to_string(count * p) + " of its " + std::to_string(h) +
                          "x" + std::to_string(w) + " patches");
    if (count > max_patches)  // export/vision.py SlicesTooLarge
        throw VisionError("a slice of " + std::to_string(h) + "x" + std::to_string(w) + " patches (" +
                          std::to_string(count) + ") exceeds the encoder's static max_patches=" +
                          std::to_string(max_patches) + ": export with a max_patches of at least that many");
    if (batch < 1) throw VisionError("the encoder's batch is " + std::to_string(batch) + ": it must be at least 1");
    VisionBatch out;
    out.batch = batch;
    out.max_patches = max_patches;
    out.patch_size = p;
    out.embed_dim = resampler.embed_dim;
    const size_t L = max_patches, E = resampler.embed_dim;
    // [batch, 3, p, L * p]: the slice's patch rows first, zeros after (pad_slices)
    out.pixel_values.assign(batch * 3 * p * L * p, 0.0f);
    for (int c = 0; c < 3; ++c)
        for (int py = 0; py < p; ++py)
            std::memcpy(&out.pixel_values[(static_cast<size_t>(c) * p + py) * L * p],
                        &slice.values[(static_cast<size_t>(c) * p + py) * count * p], count * p * sizeof(float));
    // padding rows keep one unmasked patch, so no softmax row is empty
    out.patch_mask.assign(batch * L, 0.0f);
    std::fill(out.patch_mask.begin(), out.patch_mask.begin() + count, 1.0f);
    for (int b = 1; b < batch; ++b) out.patch_mask[b * L] = 1.0f;
    out.position_ids.assign(batch * L, 0);
    const std::vector<int64_t> ids = navit_position_ids(h, w, num_patches_per_side);
    std::copy(ids.begin(), ids.end(), out.position_ids.begin());
    // 2.5-style resamplers add these to the keys, 4.5's to the values: the same 2D table for an image
    out.resampler_pos.assign(batch * L * E, 0.0f);
    const std::vector<float> table = sincos_2d(resampler.embed_dim, h, w, resampler.frequencies);
    std::copy(table.begin(), table.end(), out.resampler_pos.begin());
    return out;
}

void check_vision_batch(const VisionBatch& in, int batch, int max_patches, int embed_dim, const std::string& encoder) {
    const size_t rows = static_cast<size_t>(in.batch) * in.max_patches;
    const bool sizes_match = in.pixel_values.size() == rows * 3 * in.patch_size * in.patch_size &&
                             in.patch_mask.size() == rows && in.position_ids.size() == rows &&
                             in.resampler_pos.size() == rows * in.embed_dim;
    if (!sizes_match)
        throw VisionError("the vision inputs' arrays do not match their batch " + std::to_string(in.batch) +
                          ", max_patches " + std::to_string(in.max_patches) + " and embed_dim " +
                          std::to_string(in.embed_dim) + ": build them with vision_batch");
    if (in.batch != batch || in.max_patches != max_patches || in.embed_dim != embed_dim)
        throw VisionError(encoder + " takes batch " + std::to_string(batch) + ", max_patches " +
                          std::to_string(max_patches) + ", embed_dim " + std::to_string(embed_dim) +
                          "; the inputs have " + std::to_string(in.batch) + ", " + std::to_string(in.max_patches) +
                          ", " + std::to_string(in.embed_dim) +
                          ": build them with the encoder's batch() and max_patches()");
}

}  // namespace edgevlm
