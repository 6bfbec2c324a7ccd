#include "edgevlm/image_file.h"

#include <cctype>
#include <fstream>
#include <iterator>

namespace edgevlm {

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw PreprocessError("cannot read image " + path + ": check the path");
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The next header token of a PPM (skipping whitespace and # comments).
std::string header_token(const std::vector<uint8_t>& bytes, size_t& at) {
    while (at < bytes.size()) {
        if (bytes[at] == '#')
            while (at < bytes.size() && bytes[at] != '\n') ++at;
        else if (std::isspace(bytes[at])) ++at;
        else break;
    }
    std::string token;
    while (at < bytes.size() && !std::isspace(bytes[at]) && bytes[at] != '#') token += static_cast<char>(bytes[at++]);
    return token;
}

int header_number(const std::vector<uint8_t>& bytes, size_t& at, const std::string& path, const char* what) {
    const std::string token = header_token(bytes, at);
    if (token.empty() || token.size() > 9 || token.find_first_not_of("0123456789") != std::string::npos)
        throw PreprocessError(path + ": the PPM header's " + what + " is `" + token + "`, not a number");
    return std::stoi(token);
}

}  // namespace

RgbImage read_ppm(const std::string& path) {
    const std::vector<uint8_t> bytes = read_bytes(path);
    size_t at = 0;
    const std::string magic = header_token(bytes, at);
    if (magic != "P6")
        throw PreprocessError(path + " is not a binary RGB PPM (P6)" +
                              (magic == "P5" ? std::string(": it is grayscale (P5)") : std::string()) +
                              ": convert it (e.g. Pillow: Image.open(f).convert('RGB').save('x.ppm')) or pass raw "
                              "RGB8 with --rgb FILE,W,H");
    const int width = header_number(bytes, at, path, "width");
    const int height = header_number(bytes, at, path, "height");
    const int maxval = header_number(bytes, at, path, "maximum value");
    if (maxval != 255) throw PreprocessError(path + " has " + std::to_string(maxval) + " levels per channel: only 8-bit (255) PPMs are read");
    ++at;  // the single whitespace byte before the pixels
    const size_t need = static_cast<size_t>(width) * height * 3;
    if (width <= 0 || height <= 0 || bytes.size() < at || bytes.size() - at != need)
        throw PreprocessError(path + ": a " + std::to_string(width) + "x" + std::to_string(height) + " PPM needs " +
                              std::to_string(need) + " pixel bytes, the file holds " +
                              std::to_string(bytes.size() > at ? bytes.size() - at : 0) + ": the file is truncated or not a PPM");
    return RgbImage(width, height, std::vector<uint8_t>(bytes.begin() + static_cast<std::ptrdiff_t>(at), bytes.end()));
}

RgbImage read_raw_rgb(const std::string& path, int width, int height) {
    std::vector<uint8_t> bytes = read_bytes(path);
    const size_t pixels = static_cast<size_t>(width > 0 ? width : 0) * (height > 0 ? height : 0);
    if (pixels > 0 && bytes.size() == pixels * 4)
        throw PreprocessError(path + " holds 4 bytes per pixel for " + std::to_string(width) + "x" + std::to_string(height) +
                              " (RGBA or BGRA?): the runtime takes RGB8, 3 bytes per pixel; drop the alpha channel");
    if (pixels > 0 && bytes.size() == pixels)
        throw PreprocessError(path + " holds 1 byte per pixel for " + std::to_string(width) + "x" + std::to_string(height) +
                              " (grayscale?): the runtime takes RGB8, 3 bytes per pixel");
    return RgbImage(width, height, std::move(bytes));
}

}  // namespace edgevlm
