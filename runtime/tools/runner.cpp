// edgevlm-runner: runs exported artifacts without Python.
//
//   edgevlm-runner --artifacts DIR [--image FILE.ppm]... [--rgb FILE,W,H]... --prompt TEXT
//                  [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] [--vision auto|pte|FILE]
//                  [--no-verify] [--ignore-stop] [--threads N] [--no-mmap] [--json OUT]
//     image(s) + question -> text, streamed to stdout; where the time went on stderr; --json writes
//     the text, ids and stats (runtime/schemas/runner_result.schema.json).
//   edgevlm-runner --pte FILE --tokens ID,ID,... [same generation options]
//     decoder only: prompt ids in, generated ids out (the decoder benchmark's mode).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "edgevlm/image_file.h"
#include "edgevlm/pipeline.h"
#include "../src/json_write.h"
#include "tool_common.h"

using namespace edgevlm;
using namespace edgevlm::tools;

namespace {

constexpr const char* kUsage =
    "usage: edgevlm-runner --artifacts DIR [--image FILE.ppm]... [--rgb FILE,W,H]... --prompt TEXT [options]\n"
    "       edgevlm-runner --pte FILE --tokens ID,ID,... [options]\n"
    "options: --max-new-tokens N (32)  --temperature T (0: greedy)  --top-p P (1)  --seed S (0)\n"
    "         --vision auto|pte|FILE  --no-verify  --ignore-stop  --threads N  --no-mmap  --json OUT\n";

struct Args {
    std::string artifacts, pte, prompt, json, vision = "auto";
    bool has_prompt = false, verify = true, mmap = true;  // --no-mmap reads the program into memory
    std::vector<int64_t> tokens;
    std::vector<RgbImage> images;
    RunOptions run;
    int threads = 0;  // ExecuTorch threadpool size; 0: its default
};

[[noreturn]] void usage(const std::string& problem) {
    std::cerr << "error: " << problem << "\n" << kUsage;
    std::exit(2);
}

Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--ignore-stop") { args.run.ignore_stop = true; continue; }
        if (flag == "--no-verify") { args.verify = false; continue; }
        if (flag == "--no-mmap") { args.mmap = false; continue; }
        if (flag == "--help" || flag == "-h") { std::cout << kUsage; std::exit(0); }
        if (i + 1 >= argc) usage(flag + " needs a value");
        const std::string value = argv[++i];
        if (flag == "--artifacts") args.artifacts = value;
        else if (flag == "--pte") args.pte = value;
        else if (flag == "--tokens") args.tokens = parse_ids(flag, value);
        else if (flag == "--prompt") args.prompt = value, args.has_prompt = true;
        else if (flag == "--image") args.images.push_back(read_ppm(value));
        else if (flag == "--rgb") args.images.push_back(parse_rgb(value));
        else if (flag == "--vision") args.vision = value;
        else if (flag == "--max-new-tokens") args.run.max_new_tokens = static_cast<int>(parse_int(flag, value));
        else if (flag == "--temperature") args.run.sampling.temperature = static_cast<float>(parse_float(flag, value));
        else if (flag == "--top-p") args.run.sampling.top_p = static_cast<float>(parse_float(flag, value));
        else if (flag == "--seed") args.run.sampling.seed = static_cast<uint64_t>(parse_int(flag, value));
        else if (flag == "--json") args.json = value;
        else if (flag == "--threads") args.threads = static_cast<int>(parse_int(flag, value));
        else usage("unknown option " + flag);
    }
    if (args.artifacts.empty() == args.pte.empty()) usage("give either --artifacts DIR or --pte FILE");
    if (!args.artifacts.empty() && !args.has_prompt) usage("--prompt is required with --artifacts");
    if (!args.pte.empty() && args.tokens.empty()) usage("--tokens is required with --pte");
    if (args.run.max_new_tokens < 1) usage("--max-new-tokens must be at least 1");
    if (args.run.sampling.temperature < 0) usage("--temperature must be 0 (greedy) or more");
    if (args.run.sampling.top_p <= 0 || args.run.sampling.top_p > 1) usage("--top-p must be in (0, 1]");
    if (args.threads < 0) usage("--threads must be 0 (default) or more");
    return args;
}

int run_artifacts(const Args& args) {
    PipelineOptions options;
    options.vision = args.vision;
    options.verify = args.verify;
    options.mmap = args.mmap;
    options.threads = static_cast<size_t>(args.threads);
    if (!args.verify) std::cerr << "warning: --no-verify: artifact sha256 checks skipped\n";
    Pipeline pipeline(args.artifacts, options);
    const RunResult r = pipeline.run(args.images, args.prompt, args.run, [](const std::string& piece) {
        std::cout << piece << std::flush;
    });
    std::cout << "\n";
    const RunStats& s = r.stats;
    std::fprintf(stderr, "load %.0f ms, %zu image slice(s) on %s in %.1f ms, prompt %lld tokens, prefill %.1f ms "
                 "(%.1f tok/s), first token after %.1f ms, decode %lld steps in %.1f ms (%.1f tok/s), stopped by %s\n",
                 s.model_load_ms, s.vision_slice_ms.size(), s.vision_runtime.c_str(), s.vision_ms,
                 static_cast<long long>(s.prompt_tokens), s.prefill_ms, s.prompt_tokens * 1000.0 / std::max(s.prefill_ms, 1e-9),
                 s.time_to_first_token_ms, static_cast<long long>(s.decode_steps), s.decode_ms,
                 s.decode_steps * 1000.0 / std::max(s.decode_ms, 1e-9), s.stopped_by.c_str());
    if (!args.json.empty()) write_file(args.json, r.to_json(peak_rss_bytes()));
    return 0;
}

int run_tokens(const Args& args) {
    const size_t threads = set_threads(static_cast<size_t>(args.threads));
    const auto load_start = std::chrono::steady_clock::now();
    PteDecoder decoder(args.pte, args.mmap);
    const double load_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start).count();
    const std::set<int64_t> stop = args.run.ignore_stop ? std::set<int64_t>{} : decoder.stop_ids();
    const Generation g = generate(decoder, decoder.embed(args.tokens), args.run.max_new_tokens, stop, args.run.sampling);
    json::Writer ids;
    ids.integers(g.tokens);
    std::cout << ids.str() << "\n";
    const double decode_tps = g.decode_ms > 0 ? g.decode_steps * 1000.0 / g.decode_ms : 0.0;
    std::fprintf(stderr, "threads %zu, load %.0f ms, prefill %lld tokens in %.1f ms (%.1f tok/s), decode %lld tokens in "
                 "%.1f ms (%.1f tok/s), stopped by %s\n", threads, load_ms, static_cast<long long>(g.prompt_tokens),
                 g.prefill_ms, g.prompt_tokens * 1000.0 / g.prefill_ms, static_cast<long long>(g.decode_steps),
                 g.decode_ms, decode_tps, g.stopped_by.c_str());
    if (!args.json.empty()) {
        json::Writer w;
        w.begin_object().key("tokens").integers(g.tokens).field("stopped_by", g.stopped_by);
        w.field("prompt_tokens", g.prompt_tokens).field("model_load_ms", load_ms).field("prefill_ms", g.prefill_ms);
        w.field("decode_ms", g.decode_ms).field("decode_steps", g.decode_steps).field("decode_tokens_per_s", decode_tps);
        w.field("peak_rss_bytes", static_cast<int64_t>(peak_rss_bytes())).end_object();
        write_file(args.json, w.str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args args = parse(argc, argv);
        return args.artifacts.empty() ? run_tokens(args) : run_artifacts(args);
    } catch (const UsageError& e) {
        usage(e.what());
    } catch (const std::exception& e) {  // every refusal of the core is a std::runtime_error with the fix
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
