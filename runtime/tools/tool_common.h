// What the command-line tools share: flag value parsing (a bad value throws UsageError, which each
// tool's main turns into its usage text and exit status 2), the process's peak RSS, file writing.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgevlm/image_file.h"

namespace edgevlm::tools {

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline long long parse_int(const std::string& flag, const std::string& text) {
    char* end = nullptr;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0') throw UsageError(flag + " takes an integer, got `" + text + "`");
    return value;
}

inline double parse_float(const std::string& flag, const std::string& text) {
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') throw UsageError(flag + " takes a number, got `" + text + "`");
    return value;
}

// ID,ID,... (token ids, context lengths)
inline std::vector<int64_t> parse_ids(const std::string& flag, const std::string& text) {
    std::vector<int64_t> ids;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) ids.push_back(parse_int(flag, item));
    if (ids.empty()) throw UsageError(flag + " is empty: give comma-separated integers");
    return ids;
}

inline RgbImage parse_rgb(const std::string& spec) {  // FILE,W,H
    const size_t second = spec.rfind(','), first = second == std::string::npos ? second : spec.rfind(',', second - 1);
    if (first == std::string::npos) throw UsageError("--rgb takes FILE,WIDTH,HEIGHT, got `" + spec + "`");
    return read_raw_rgb(spec.substr(0, first),
                        static_cast<int>(parse_int("--rgb width", spec.substr(first + 1, second - first - 1))),
                        static_cast<int>(parse_int("--rgb height", spec.substr(second + 1))));
}

// This process's peak resident set (VmHWM, Linux): after exec it counts this program alone.
inline long long peak_rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
    return 0;
}

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text << "\n";
    if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace edgevlm::tools
