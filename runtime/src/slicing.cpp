// The LLaVA-UHD slice plan of edgevlm/preprocess/slicing.py (the official MiniCPM-V processor's
// arithmetic): Python's round() is half-to-even on doubles (std::nearbyint in the default
// rounding mode), int() truncates, and grid ties keep the first candidate.
#include <cmath>
#include <limits>

#include "edgevlm/preprocess.h"

namespace edgevlm {
namespace {

int ensure_divide(double length, int patch) {
    const long rounded = static_cast<long>(std::nearbyint(length / patch)) * patch;
    return static_cast<int>(rounded > patch ? rounded : patch);
}

Size find_best_resize(double width, double height, int scale, int patch, bool allow_upscale) {
    if (width * height > static_cast<double>(scale) * scale || allow_upscale) {
        const double ratio = width / height;
        height = std::trunc(scale / std::sqrt(ratio));
        width = std::trunc(height * ratio);  // may be 0 for extreme ratios; ensure_divide clamps
    }
    return {ensure_divide(width, patch), ensure_divide(height, patch)};
}

Size refine_size(Size image, Size grid, int scale, int patch) {
    const int refine_w = ensure_divide(image.width, grid.width);
    const int refine_h = ensure_divide(image.height, grid.height);
    const Size cell = find_best_resize(static_cast<double>(refine_w) / grid.width,
                                       static_cast<double>(refine_h) / grid.height, scale, patch, true);
    return {cell.width * grid.width, cell.height * grid.height};
}

std::optional<Size> sliced_grid(Size image, int max_slices, int scale) {
    const double log_ratio = std::log(static_cast<double>(image.width) / image.height);
    const double area = static_cast<double>(image.width) * image.height;
    const int multiple = static_cast<int>(std::min<double>(std::ceil(area / (static_cast<double>(scale) * scale)),
                                                           max_slices));
    if (multiple <= 1) return std::nullopt;
    std::optional<Size> best;
    double best_error = std::numeric_limits<double>::infinity();
    for (int count : {multiple - 1, multiple, multiple + 1}) {
        if (count == 1 || count > max_slices) continue;
        for (int cols = 1; cols <= count; ++cols) {
            if (count % cols) continue;
            const double error = std::fabs(log_ratio - std::log(static_cast<double>(cols) / (count / cols)));
            if (error < best_error) {
                best = Size{cols, count / cols};
                best_error = error;
            }
        }
    }
    return best;
}

}  // namespace

int SliceLayout::num_slices() const { return 1 + (grid ? grid->width * grid->height : 0); }

Size SliceLayout::slice_size() const {
    if (!grid) throw PreprocessError("slice_size of a layout without a grid");
    return {refine_size->width / grid->width, refine_size->height / grid->height};
}

SliceLayout slice_layout(Size image, const SliceConfig& config) {
    if (image.width <= 0 || image.height <= 0) throw PreprocessError("cannot slice an empty image");
    if (config.patch_size <= 0 || config.scale_resolution <= 0 || config.max_slice_nums <= 0)
        throw PreprocessError("slice config values must be positive (check the manifest's preprocessing block)");
    SliceLayout layout;
    layout.image_size = image;
    if (!config.slice_mode) {  // the official processor feeds the image unresized
        layout.source_size = image;
        layout.resize_source = false;
        return layout;
    }
    const int scale = config.scale_resolution, patch = config.patch_size;
    layout.grid = sliced_grid(image, config.max_slice_nums, scale);
    if (!layout.grid) {  // one view, up- or downscaled to ~scale^2
        layout.source_size = find_best_resize(image.width, image.height, scale, patch, true);
        return layout;
    }
    layout.source_size = find_best_resize(image.width, image.height, scale, patch, false);
    layout.refine_size = refine_size(image, *layout.grid, scale, patch);
    return layout;
}

}  // namespace edgevlm
