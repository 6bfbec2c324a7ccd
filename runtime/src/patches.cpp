// Pixels -> what the NaViT SigLIP tower takes (edgevlm/preprocess/patches.py): float32
// normalisation in the official order, patch rows in raster order, bucketed position ids.
#include <cmath>

#include "edgevlm/preprocess.h"

namespace edgevlm {

PatchRow to_patch_row(const RgbImage& view, const Normalization& norm, int p) {
    PatchRow row;
    row.patches_h = view.height / p;  // rows/columns past a multiple of the patch are dropped
    row.patches_w = view.width / p;
    if (row.patches_h == 0 || row.patches_w == 0)  // only without slicing: sliced views are >= 1 patch
        throw PreprocessError("a " + std::to_string(view.width) + "x" + std::to_string(view.height) +
                              " view is smaller than one " + std::to_string(p) + "-pixel patch: with slice_mode "
                              "off the image is not resized, so pass one at least a patch wide and high");
    const int n = row.patches_h * row.patches_w;
    row.values.resize(static_cast<size_t>(3) * p * n * p);
    // [3, p, n*p]: patch k (raster order) occupies columns k*p .. k*p+p-1 of every patch row
    for (int c = 0; c < 3; ++c) {
        for (int py = 0; py < p; ++py) {
            float* out = &row.values[(static_cast<size_t>(c) * p + py) * n * p];
            for (int k = 0; k < n; ++k) {
                const uint8_t* src = view.row((k / row.patches_w) * p + py) + static_cast<size_t>((k % row.patches_w) * p) * 3;
                for (int px = 0; px < p; ++px) {
                    const float x = static_cast<float>(src[px * 3 + c]) / 255.0f;  // float32 throughout
                    out[k * p + px] = (x - norm.mean[c]) / norm.std[c];
                }
            }
        }
    }
    return row;
}

SlicedImage image_slices(const RgbImage& image, const SliceConfig& config, const Normalization& norm) {
    SlicedImage out;
    out.layout = slice_layout({image.width, image.height}, config);
    const SliceLayout& layout = out.layout;
    const int p = config.patch_size;
    if (!layout.resize_source) {
        out.slices.push_back(to_patch_row(image, norm, p));
        return out;
    }
    out.slices.push_back(to_patch_row(resize_bicubic(image, layout.source_size.width, layout.source_size.height),
                                      norm, p));
    if (!layout.grid) return out;
    const RgbImage refine = resize_bicubic(image, layout.refine_size->width, layout.refine_size->height);
    const Size cell = layout.slice_size();
    for (int top = 0; top < refine.height; top += cell.height)
        for (int left = 0; left < refine.width; left += cell.width)
            out.slices.push_back(to_patch_row(crop(refine, left, top, cell.width, cell.height), norm, p));
    return out;
}

namespace {

// torch.arange(start, end, step) for a float32 result as torch computes it on an x86-64 CPU,
// where edgevlm.preprocess makes the export's references: the length from doubles; chunks of 16
// as two 8-lane vectors, each lane (double)(float)(start + step * i0) + k * step rounded to float
// (the base is rounded to float first); the tail scalar, start + step * i rounded once. The two
// disagree by an ulp at some indices, enough to move a position across a bucket boundary
// (widths 49, 58, 77 at 70 buckets). Other torch builds (ARM's 4-lane vectors, CUDA's float
// arithmetic) differ again; the native runtime keeps the x86 numbers on every platform.
std::vector<float> torch_arange_f32(double start, double end, double step) {
    constexpr int64_t kLanes = 8;
    const auto count = static_cast<int64_t>(std::ceil((end - start) / step));
    std::vector<float> values(count > 0 ? count : 0);
    int64_t i = 0;
    for (; i + 2 * kLanes <= count; i += 2 * kLanes) {
        for (int64_t v = i; v < i + 2 * kLanes; v += kLanes) {
            const auto base = static_cast<double>(static_cast<float>(start + step * static_cast<double>(v)));
            for (int64_t k = 0; k < kLanes; ++k) values[v + k] = static_cast<float>(base + static_cast<double>(k) * step);
        }
    }
    for (; i < count; ++i) values[i] = static_cast<float>(start + step * static_cast<double>(i));
    return values;
}

// torch.bucketize(x, boundaries, right=True): how many boundaries are <= x
std::vector<int64_t> bucketize_right(const std::vector<float>& x, const std::vector<float>& boundaries) {
    std::vector<int64_t> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        int64_t n = 0;
        while (n < static_cast<int64_t>(boundaries.size()) && boundaries[n] <= x[i]) ++n;
        out[i] = n;
    }
    return out;
}

}  // namespace

std::vector<int64_t> navit_position_ids(int h, int w, int n) {
    // The official code divides by an int32 tensor, so the coordinate step is float32 1/h.
    const std::vector<float> boundaries = torch_arange_f32(1.0 / n, 1.0, 1.0 / n);
    const auto bucket_h = bucketize_right(torch_arange_f32(0.0, 1 - 1e-6, 1.0f / static_cast<float>(h)), boundaries);
    const auto bucket_w = bucketize_right(torch_arange_f32(0.0, 1 - 1e-6, 1.0f / static_cast<float>(w)), boundaries);
    std::vector<int64_t> ids;
    ids.reserve(bucket_h.size() * bucket_w.size());
    for (int64_t bh : bucket_h)
        for (int64_t bw : bucket_w) ids.push_back(bh * n + bw);
    return ids;
}

}  // namespace edgevlm
