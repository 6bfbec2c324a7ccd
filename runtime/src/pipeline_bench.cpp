// Pipeline's benchmark hook (edgevlm-bench): the vision encoder timed on one slice, apart from a run.
#include <time.h>

#include <algorithm>

#include "edgevlm/pipeline.h"

namespace edgevlm {

int64_t monotonic_ns() {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

VisionBench Pipeline::bench_vision(const RgbImage& image, int warmup, int runs) {
    if (!vision_) throw VisionError("no vision encoder in " + manifest_.root + ": " + vision_unavailable_);
    const SlicedImage sliced = image_slices(image, manifest_.slice, manifest_.norm);
    // the largest slice (by patch count; the first on ties): the encoder's worst case for this image
    const PatchRow& slice = *std::max_element(sliced.slices.begin(), sliced.slices.end(), [](const PatchRow& a,
                                                                                             const PatchRow& b) {
        return a.patches_h * a.patches_w < b.patches_h * b.patches_w;
    });
    if (slice.patches_h * slice.patches_w > vision_->max_patches())
        throw VisionError("a slice of " + std::to_string(slice.patches_h) + "x" + std::to_string(slice.patches_w) +
                          " patches exceeds the encoder's static max_patches=" + std::to_string(vision_->max_patches()));
    const VisionBatch batch = vision_batch(slice, vision_->max_patches(), vision_->batch(),
                                           manifest_.num_patches_per_side, manifest_.resampler,
                                           manifest_.slice.patch_size);
    VisionBench out;
    out.patches_h = slice.patches_h;
    out.patches_w = slice.patches_w;
    out.runtime = vision_->describe();
    out.cold_start_ns = monotonic_ns();
    vision_->encode(batch);
    out.cold_end_ns = monotonic_ns();
    out.cold_ms = (out.cold_end_ns - out.cold_start_ns) / 1e6;
    for (int i = 0; i < warmup; ++i) vision_->encode(batch);
    out.warm_start_ns = monotonic_ns();
    int64_t last = out.warm_start_ns;
    for (int i = 0; i < runs; ++i) {
        vision_->encode(batch);
        const int64_t now = monotonic_ns();
        out.warm_ms.push_back((now - last) / 1e6);
        last = now;
    }
    out.warm_end_ns = last;
    return out;
}

}  // namespace edgevlm
