// Pillow's BICUBIC resize for 8-bit RGB, reproduced from how Pillow 13's Resample.c works (two
// separable passes with per-output-pixel coefficient windows, 22-bit fixed point, a rounding
// bias of half an LSB, clamping to 0..255, and its choice of which pass runs first) so that
// results are bit-identical to PIL.Image.resize(size, Image.BICUBIC) on the same pixels.
#include <cmath>
#include <cstring>

#include "edgevlm/preprocess.h"

namespace edgevlm {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // 8 bits of result, 2 of headroom for negative lobes
constexpr double kSupport = 2.0;            // the bicubic kernel's radius

double bicubic(double x) {
    constexpr double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Per output pixel: the first input pixel, the window length and its fixed-point weights.
struct Coefficients {
    int ksize = 0;
    std::vector<int> first, count;
    std::vector<int32_t> weights;  // out_size * ksize
};

Coefficients precompute(int in_size, int out_size) {
    // Pillow takes the box as floats: (in1 - in0) is a float difference, widened afterwards.
    const float in0 = 0.0f, in1 = static_cast<float>(in_size);
    const double scale = static_cast<double>(in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = kSupport * filterscale;
    Coefficients c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
    std::vector<double> k(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);  // C truncation, as Pillow rounds
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            k[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        int32_t* out = &c.weights[static_cast<size_t>(xx) * c.ksize];
        for (int x = 0; x < xmax; ++x) {
            const double w = ww != 0.0 ? k[x] / ww : k[x];
            out[x] = w < 0 ? static_cast<int32_t>(-0.5 + w * (1 << kPrecisionBits))
                           : static_cast<int32_t>(0.5 + w * (1 << kPrecisionBits));
        }
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

inline uint8_t clip8(int32_t sum) {
    const int32_t v = sum >> kPrecisionBits;  // arithmetic shift, as Pillow's lookup index
    return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// rows [row0, row0 + out.height) of `in`, resampled along x into `out`
void horizontal(const RgbImage& in, int row0, const Coefficients& c, RgbImage& out) {
    for (int yy = 0; yy < out.height; ++yy) {
        const uint8_t* src = in.row(yy + row0);
        uint8_t* dst = out.row(yy);
        for (int xx = 0; xx < out.width; ++xx) {
            const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
            const uint8_t* p = src + static_cast<size_t>(c.first[xx]) * 3;
            int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < c.count[xx]; ++x) {
                s0 += p[x * 3 + 0] * k[x];
                s1 += p[x * 3 + 1] * k[x];
                s2 += p[x * 3 + 2] * k[x];
            }
            dst[xx * 3 + 0] = clip8(s0);
            dst[xx * 3 + 1] = clip8(s1);
            dst[xx * 3 + 2] = clip8(s2);
        }
    }
}

void vertical(const RgbImage& in, int row_shift, const Coefficients& c, RgbImage& out) {
    for (int yy = 0; yy < out.height; ++yy) {
        const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
        const int first = c.first[yy] - row_shift;
        uint8_t* dst = out.row(yy);
        for (int xx = 0; xx < out.width * 3; ++xx) {
            int32_t s = 1 << (kPrecisionBits - 1);
            for (int y = 0; y < c.count[yy]; ++y) s += in.row(y + first)[xx] * k[y];
            dst[xx] = clip8(s);
        }
    }
}

}  // namespace

RgbImage::RgbImage(int w, int h) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3) {}

RgbImage::RgbImage(int w, int h, std::vector<uint8_t> rgb) : width(w), height(h), pixels(std::move(rgb)) {
    if (w <= 0 || h <= 0) throw PreprocessError("image size " + std::to_string(w) + "x" + std::to_string(h) +
                                                " is empty: pass a decoded RGB image with both sides >= 1");
    if (pixels.size() != static_cast<size_t>(w) * h * 3)
        throw PreprocessError("RGB buffer holds " + std::to_string(pixels.size()) + " bytes, but a " +
                              std::to_string(w) + "x" + std::to_string(h) + " RGB8 image needs " +
                              std::to_string(static_cast<size_t>(w) * h * 3) +
                              ": pass interleaved 8-bit RGB (3 bytes per pixel, no row padding, no alpha)");
}

RgbImage resize_bicubic(const RgbImage& in, int out_width, int out_height) {
    if (out_width <= 0 || out_height <= 0) throw PreprocessError("resize to an empty size");
    if (out_width == in.width && out_height == in.height) return in;  // Pillow returns a copy
    const Coefficients ch = precompute(in.width, out_width);
    const Coefficients cv = precompute(in.height, out_height);
    const bool need_h = out_width != in.width, need_v = out_height != in.height;
    // Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice as
    // many pixels as the width (a smaller intermediate); the order changes the rounding.
    const int shrink_y = in.height - out_height, shrink_x = in.width - out_width;
    const bool vertical_first = shrink_y > 0 && shrink_y > 2 * shrink_x;
    if (!need_v) {
        RgbImage out(out_width, in.height);
        horizontal(in, 0, ch, out);
        return out;
    }
    if (!need_h) {
        RgbImage out(in.width, out_height);
        vertical(in, 0, cv, out);
        return out;
    }
    RgbImage out(out_width, out_height);
    if (vertical_first) {
        RgbImage temp(in.width, out_height);
        vertical(in, 0, cv, temp);
        horizontal(temp, 0, ch, out);
        return out;
    }
    // the horizontal pass only computes the rows the vertical pass reads
    const int first_row = cv.first[0];
    const int last_row = cv.first[out_height - 1] + cv.count[out_height - 1];
    RgbImage temp(out_width, last_row - first_row);
    horizontal(in, first_row, ch, temp);
    vertical(temp, first_row, cv, out);
    return out;
}

RgbImage crop(const RgbImage& in, int left, int top, int width, int height) {
    if (left < 0 || top < 0 || left + width > in.width || top + height > in.height)
        throw PreprocessError("crop box outside the image");
    RgbImage out(width, height);
    for (int y = 0; y < height; ++y)
        std::memcpy(out.row(y), in.row(top + y) + static_cast<size_t>(left) * 3, static_cast<size_t>(width) * 3);
    return out;
}

}  // namespace edgevlm
