// MiniCPM-V image preprocessing from an RGB8 buffer: the LLaVA-UHD slice plan, Pillow-exact
// BICUBIC resizes, normalisation and NaViT patch rows. Same numbers as `edgevlm.preprocess`
// (Python) for the same pixels; tests/test_runtime_preprocess.py holds the two together.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgevlm {

// Raised for input the core refuses (wrong buffer size, zero-sized image, bad config).
struct PreprocessError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Interleaved 8-bit RGB, row-major, no padding between rows.
struct RgbImage {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;  // width * height * 3

    RgbImage() = default;
    RgbImage(int w, int h);
    RgbImage(int w, int h, std::vector<uint8_t> rgb);  // checks the size
    const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * 3; }
    uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * 3; }
};

// Pillow's Image.resize(size, BICUBIC) for mode RGB, bit for bit: two fixed-point passes
// (horizontal, then vertical), coefficients normalised per output pixel.
RgbImage resize_bicubic(const RgbImage& in, int out_width, int out_height);
RgbImage crop(const RgbImage& in, int left, int top, int width, int height);

struct Size {
    int width = 0;
    int height = 0;
    bool operator==(const Size& o) const { return width == o.width && height == o.height; }
};

struct SliceConfig {
    int max_slice_nums = 9;
    int scale_resolution = 448;
    int patch_size = 14;
    bool slice_mode = true;
};

// Where an image's slices come from (edgevlm.preprocess.slicing.SliceLayout).
struct SliceLayout {
    Size image_size;
    Size source_size;
    std::optional<Size> grid;         // (cols, rows)
    std::optional<Size> refine_size;  // the view the grid is cut from
    bool resize_source = true;

    int num_slices() const;
    Size slice_size() const;  // one grid cell; requires a grid
};

SliceLayout slice_layout(Size image, const SliceConfig& config);

// One slice ready for the vision tower: [3, patch, n * patch] float32 patches in raster order.
struct PatchRow {
    int patches_h = 0;  // tgt_size (h, w) in patches
    int patches_w = 0;
    std::vector<float> values;
};

struct Normalization {
    float mean[3] = {0.5f, 0.5f, 0.5f};
    float std[3] = {0.5f, 0.5f, 0.5f};
};

// Every slice of an image in placeholder order (source view first, then the grid row by row).
struct SlicedImage {
    SliceLayout layout;
    std::vector<PatchRow> slices;
};

SlicedImage image_slices(const RgbImage& image, const SliceConfig& config, const Normalization& norm);
PatchRow to_patch_row(const RgbImage& view, const Normalization& norm, int patch_size);

// NaViT position-table ids of an h x w patch grid (the official float32 bucketing).
std::vector<int64_t> navit_position_ids(int h, int w, int num_patches_per_side);

// MiniCPM-V 4.5 video (edgevlm.preprocess.video): frame times in seconds -> temporal ids, each time
// snapped to the nearest point of arange(0, duration, scale) (ties to the earlier point), divided
// by scale and truncated; duration < 0: just past the last frame. Throws PreprocessError for a
// negative or non-finite time.
std::vector<int32_t> temporal_ids_from_timestamps(const std::vector<double>& seconds, double scale = 0.1,
                                                  double duration = -1.0);
// Consecutive groups of up to group_size ids (the frames the 3D resampler merges), 6 in 4.5.
std::vector<std::vector<int32_t>> group_frames(const std::vector<int32_t>& ids, int group_size = 6);

}  // namespace edgevlm
