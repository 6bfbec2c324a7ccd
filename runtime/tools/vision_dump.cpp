// Test and debugging tool for the native vision path, so tests/test_runtime_vision.py can compare
// it with Python (export/vision.py vision_inputs, onnxruntime, ExecuTorch's Python runtime).
//
//   edgevlm-vision-dump inputs --rows ROWS.f32 --h H --w W --max-patches L --batch B --per-side N
//                              --embed-dim E --on-values 0|1 [--patch P] --out PREFIX
//       what vision_batch builds from one slice's patch rows ([3, P, H*W*P] float32):
//       PREFIX.pixel_values.f32, .patch_mask.f32, .position_ids.i32, .resampler_pos.f32
//   edgevlm-vision-dump encode (--pte FILE | --onnx FILE [--provider P] [--threads N]) --inputs PREFIX
//                              --out OUT.f32
//       runs the encoder on those four files (written by `inputs` or by a test), writes row 0's
//       [queries, width] float32 and prints {"encoder", "batch", "max_patches", "rows", "width"}
//   edgevlm-vision-dump has-vision FILE.pte      prints true or false
// Raw files are little-endian, row-major. Exit 1 on a VisionError, 2 on bad usage.
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>

#include "edgevlm/vision.h"

using namespace edgevlm;

namespace {

[[noreturn]] void usage(const std::string& problem) {
    std::cerr << "error: " << problem << "\n"
              << "usage: edgevlm-vision-dump inputs --rows F --h H --w W --max-patches L --batch B --per-side N "
                 "--embed-dim E --on-values 0|1 [--patch P] --out PREFIX\n"
                 "       edgevlm-vision-dump encode (--pte F | --onnx F [--provider P] [--threads N]) "
                 "--inputs PREFIX --out F\n"
                 "       edgevlm-vision-dump has-vision F\n";
    std::exit(2);
}

using Flags = std::map<std::string, std::string>;

Flags parse_flags(int argc, char** argv) {
    Flags flags;
    for (int i = 2; i < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag.rfind("--", 0) != 0 || i + 1 >= argc) usage("expected --flag VALUE pairs, got `" + flag + "`");
        flags[flag.substr(2)] = argv[i + 1];
    }
    return flags;
}

const std::string& need(const Flags& flags, const std::string& name) {
    const auto it = flags.find(name);
    if (it == flags.end()) usage("--" + name + " is required");
    return it->second;
}

int number(const Flags& flags, const std::string& name, int fallback = -1) {
    if (fallback >= 0 && !flags.count(name)) return fallback;
    const std::string& text = need(flags, name);
    char* end = nullptr;
    const long value = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || value < 0) usage("--" + name + " takes a non-negative integer");
    return static_cast<int>(value);
}

template <typename T>
std::vector<T> read_raw(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw VisionError("cannot open " + path);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() % sizeof(T)) throw VisionError(path + " is not a whole number of values");
    std::vector<T> values(bytes.size() / sizeof(T));
    std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(values.data()));
    return values;
}

template <typename T>
void write_raw(const std::string& path, const std::vector<T>& values) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(T)));
    if (!out) throw VisionError("cannot write " + path);
}

int inputs(const Flags& flags) {
    PatchRow slice;
    slice.patches_h = number(flags, "h");
    slice.patches_w = number(flags, "w");
    slice.values = read_raw<float>(need(flags, "rows"));
    const ResamplerPositions resampler{number(flags, "embed-dim"), number(flags, "on-values") != 0};
    const VisionBatch batch = vision_batch(slice, number(flags, "max-patches"), number(flags, "batch"),
                                           number(flags, "per-side"), resampler, number(flags, "patch", 14));
    const std::string prefix = need(flags, "out");
    write_raw(prefix + ".pixel_values.f32", batch.pixel_values);
    write_raw(prefix + ".patch_mask.f32", batch.patch_mask);
    write_raw(prefix + ".position_ids.i32", batch.position_ids);
    write_raw(prefix + ".resampler_pos.f32", batch.resampler_pos);
    return 0;
}

// The four files of PREFIX, shaped by the encoder's batch and max_patches.
VisionBatch read_batch(const std::string& prefix, const VisionEncoder& encoder) {
    VisionBatch in;
    in.batch = encoder.batch();
    in.max_patches = encoder.max_patches();
    in.pixel_values = read_raw<float>(prefix + ".pixel_values.f32");
    in.patch_mask = read_raw<float>(prefix + ".patch_mask.f32");
    in.position_ids = read_raw<int32_t>(prefix + ".position_ids.i32");
    in.resampler_pos = read_raw<float>(prefix + ".resampler_pos.f32");
    const size_t rows = static_cast<size_t>(in.batch) * in.max_patches;
    in.patch_size = static_cast<int>(std::lround(std::sqrt(in.pixel_values.size() / (3.0 * rows))));
    in.embed_dim = static_cast<int>(in.resampler_pos.size() / rows);
    return in;
}

int encode(const Flags& flags) {
    const bool pte = flags.count("pte") > 0;
    if (pte == (flags.count("onnx") > 0)) usage("give one of --pte or --onnx");
    const auto encoder = pte ? open_pte_vision(flags.at("pte"))
                             : open_ort_vision(flags.at("onnx"), flags.count("provider") ? flags.at("provider") : "cpu",
                                               number(flags, "threads", 0));
    const Embeddings out = encoder->encode(read_batch(need(flags, "inputs"), *encoder));
    write_raw(need(flags, "out"), out.values);
    std::cout << "{\"encoder\": \"" << encoder->describe() << "\", \"batch\": " << encoder->batch()
              << ", \"max_patches\": " << encoder->max_patches() << ", \"rows\": " << out.rows
              << ", \"width\": " << out.width << "}\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "has-vision" && argc == 3) {
            std::cout << (pte_has_vision(argv[2]) ? "true" : "false") << "\n";
            return 0;
        }
        if (mode == "inputs") return inputs(parse_flags(argc, argv));
        if (mode == "encode") return encode(parse_flags(argc, argv));
    } catch (const VisionError& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    usage(mode.empty() ? "no mode given" : "unknown mode or arguments: " + mode);
}
