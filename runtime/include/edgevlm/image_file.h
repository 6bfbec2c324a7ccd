// Image files the runner reads without third-party code: binary PPM (P6, 8-bit) and raw
// interleaved RGB8 of a given size, e.g. what a host harness writes. Apps decode images with the
// platform (Bitmap, CGImage) and pass pixels instead.
#pragma once

#include <string>

#include "edgevlm/preprocess.h"

namespace edgevlm {

RgbImage read_ppm(const std::string& path);
RgbImage read_raw_rgb(const std::string& path, int width, int height);

}  // namespace edgevlm
