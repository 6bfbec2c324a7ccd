// Test and debugging tool: runs the native preprocessing on a raw RGB8 file and writes what it
// produced, so tests/test_runtime_preprocess.py can compare it with edgevlm.preprocess.
//
//   edgevlm-preprocess-dump resize IN.rgb W H OUT_W OUT_H OUT.rgb
//   edgevlm-preprocess-dump positions MAX_SIDE PATCHES_PER_SIDE OUT.i64   (ids of every h, w in 1..MAX_SIDE)
//   edgevlm-preprocess-dump slices IN.rgb W H MAX_SLICES SCALE PATCH SLICE_MODE(0|1) PATCHES_PER_SIDE
//                                  MEAN_R MEAN_G MEAN_B STD_R STD_G STD_B OUT_PREFIX
//   edgevlm-preprocess-dump temporal SCALE DURATION(-1: after the last frame) GROUP_SIZE SECONDS...
// `slices` writes OUT_PREFIX.json (layout, per-slice tgt sizes), .f32 (patch rows) and .i64 (position ids).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "edgevlm/preprocess.h"

using namespace edgevlm;

namespace {

RgbImage read_rgb(const char* path, int w, int h) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw PreprocessError(std::string("cannot open ") + path);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return RgbImage(w, h, std::move(bytes));
}

void write_bytes(const std::string& path, const void* data, size_t size) {
    std::ofstream out(path, std::ios::binary);
    out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) throw PreprocessError("cannot write " + path);
}

std::string size_json(const Size& s) { return "[" + std::to_string(s.width) + ", " + std::to_string(s.height) + "]"; }

int slices(char** argv) {
    const RgbImage image = read_rgb(argv[2], std::atoi(argv[3]), std::atoi(argv[4]));
    SliceConfig config{std::atoi(argv[5]), std::atoi(argv[6]), std::atoi(argv[7]), std::atoi(argv[8]) != 0};
    const int per_side = std::atoi(argv[9]);
    Normalization norm;
    for (int c = 0; c < 3; ++c) {
        norm.mean[c] = std::strtof(argv[10 + c], nullptr);
        norm.std[c] = std::strtof(argv[13 + c], nullptr);
    }
    const std::string prefix = argv[16];
    const SlicedImage sliced = image_slices(image, config, norm);
    std::vector<float> values;
    std::vector<int64_t> ids;
    std::string sizes;
    for (const PatchRow& row : sliced.slices) {
        values.insert(values.end(), row.values.begin(), row.values.end());
        const auto pos = navit_position_ids(row.patches_h, row.patches_w, per_side);
        ids.insert(ids.end(), pos.begin(), pos.end());
        sizes += (sizes.empty() ? "" : ", ") + std::string("[") + std::to_string(row.patches_h) + ", " +
                 std::to_string(row.patches_w) + "]";
    }
    const SliceLayout& l = sliced.layout;
    std::string json = "{\"source_size\": " + size_json(l.source_size) +
                       ", \"grid\": " + (l.grid ? size_json(*l.grid) : "null") +
                       ", \"refine_size\": " + (l.refine_size ? size_json(*l.refine_size) : "null") +
                       ", \"num_slices\": " + std::to_string(l.num_slices()) + ", \"tgt_sizes\": [" + sizes + "]}\n";
    write_bytes(prefix + ".json", json.data(), json.size());
    write_bytes(prefix + ".f32", values.data(), values.size() * sizeof(float));
    write_bytes(prefix + ".i64", ids.data(), ids.size() * sizeof(int64_t));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const std::string mode = argc > 1 ? argv[1] : "";
        if (mode == "resize" && argc == 8) {
            const RgbImage out = resize_bicubic(read_rgb(argv[2], std::atoi(argv[3]), std::atoi(argv[4])),
                                                std::atoi(argv[5]), std::atoi(argv[6]));
            write_bytes(argv[7], out.pixels.data(), out.pixels.size());
            return 0;
        }
        if (mode == "slices" && argc == 17) return slices(argv);
        if (mode == "temporal" && argc >= 5) {  // SCALE DURATION GROUP T...: {"ids", "groups"} on stdout
            std::vector<double> times;
            for (int i = 5; i < argc; ++i) times.push_back(std::strtod(argv[i], nullptr));
            const auto ids = temporal_ids_from_timestamps(times, std::strtod(argv[2], nullptr), std::strtod(argv[3], nullptr));
            std::string out = "{\"ids\": [";
            for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
            out += "], \"groups\": [";
            const auto groups = group_frames(ids, std::atoi(argv[4]));
            for (size_t g = 0; g < groups.size(); ++g) {
                out += g ? ", [" : "[";
                for (size_t i = 0; i < groups[g].size(); ++i) out += (i ? ", " : "") + std::to_string(groups[g][i]);
                out += "]";
            }
            std::printf("%s]}\n", out.c_str());
            return 0;
        }
        if (mode == "positions" && argc == 5) {
            std::vector<int64_t> ids;
            const int max_side = std::atoi(argv[2]), per_side = std::atoi(argv[3]);
            for (int h = 1; h <= max_side; ++h)
                for (int w = 1; w <= max_side; ++w) {
                    const auto pos = navit_position_ids(h, w, per_side);
                    ids.insert(ids.end(), pos.begin(), pos.end());
                }
            write_bytes(argv[4], ids.data(), ids.size() * sizeof(int64_t));
            return 0;
        }
        std::cerr << "usage: edgevlm-preprocess-dump resize IN.rgb W H OUT_W OUT_H OUT.rgb\n"
                     "       edgevlm-preprocess-dump positions MAX_SIDE PATCHES_PER_SIDE OUT.i64\n"
                     "       edgevlm-preprocess-dump slices IN.rgb W H MAX_SLICES SCALE PATCH SLICE_MODE "
                     "PATCHES_PER_SIDE MEAN_R MEAN_G MEAN_B STD_R STD_G STD_B OUT_PREFIX\n";
        return 2;
    } catch (const PreprocessError& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    }
}
