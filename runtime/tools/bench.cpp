// edgevlm-bench: the device-side benchmark of one export folder (issue 18), one JSON file out
// (runtime/schemas/device_bench_result.schema.json).
//
//   edgevlm-bench --artifacts DIR [--image F.ppm | --rgb F,W,H] --prompt TEXT [--vision auto|pte|FILE]
//                 [--contexts 128,1024,4096] [--runs 10] [--warmup 2] [--decode-tokens 32]
//                 [--max-new-tokens 32] [--threads N] [--no-verify] [--no-mmap] --json OUT
//
// Steps, each a phase with CLOCK_MONOTONIC start/end (ns), the clock of edgevlm-power-sampler, so
// the host can attribute the sampled energy to them: load, vision_cold (the first encode of the
// image's largest slice since load, hence before e2e), vision_warm (after --warmup untimed
// encodes), e2e (one Pipeline::run, as edgevlm-runner --artifacts), then per context length C a
// prefill of C token ids (the e2e prompt's, tiled) and --decode-tokens greedy steps. Without a
// vision encoder, vision is {"unavailable": why} and e2e runs on the prompt alone.
#include <algorithm>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "edgevlm/pipeline.h"
#include "../src/json_write.h"
#include "tool_common.h"

using namespace edgevlm;
using namespace edgevlm::tools;

namespace {

constexpr const char* kUsage =
    "usage: edgevlm-bench --artifacts DIR [--image F.ppm | --rgb F,W,H] --prompt TEXT --json OUT [options]\n"
    "options: --vision auto|pte|FILE  --contexts 128,1024,4096  --runs 10  --warmup 2  --decode-tokens 32\n"
    "         --max-new-tokens 32  --threads N  --no-verify  --no-mmap\n";

struct Args {
    std::string artifacts, prompt, json, vision = "auto";
    bool has_prompt = false, verify = true, mmap = true;
    std::vector<RgbImage> images;  // none or one
    std::vector<int64_t> contexts{128, 1024, 4096};
    int runs = 10, warmup = 2, decode_tokens = 32, threads = 0;
    RunOptions run;
};

[[noreturn]] void usage(const std::string& problem) {
    std::cerr << "error: " << problem << "\n" << kUsage;
    std::exit(2);
}

int parse_count(const std::string& flag, const std::string& value, int minimum) {
    const long long n = parse_int(flag, value);
    if (n < minimum || n > 1000000) usage(flag + " must be between " + std::to_string(minimum) + " and 1000000");
    return static_cast<int>(n);
}

Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--no-verify") { args.verify = false; continue; }
        if (flag == "--no-mmap") { args.mmap = false; continue; }
        if (flag == "--help" || flag == "-h") { std::cout << kUsage; std::exit(0); }
        if (i + 1 >= argc) usage(flag + " needs a value");
        const std::string value = argv[++i];
        if (flag == "--artifacts") args.artifacts = value;
        else if (flag == "--prompt") args.prompt = value, args.has_prompt = true;
        else if (flag == "--image" || flag == "--rgb") {
            if (!args.images.empty()) usage(flag + ": give one image (--image or --rgb, once)");
            args.images.push_back(flag == "--image" ? read_ppm(value) : parse_rgb(value));
        } else if (flag == "--vision") args.vision = value;
        else if (flag == "--contexts") {
            args.contexts = parse_ids(flag, value);
            for (int64_t c : args.contexts)
                if (c < 1) usage("--contexts takes lengths of at least 1 token, got " + std::to_string(c));
        } else if (flag == "--runs") args.runs = parse_count(flag, value, 1);
        else if (flag == "--warmup") args.warmup = parse_count(flag, value, 0);
        else if (flag == "--decode-tokens") args.decode_tokens = parse_count(flag, value, 1);
        else if (flag == "--max-new-tokens") args.run.max_new_tokens = parse_count(flag, value, 1);
        else if (flag == "--threads") args.threads = parse_count(flag, value, 0);
        else if (flag == "--json") args.json = value;
        else usage("unknown option " + flag);
    }
    if (args.artifacts.empty()) usage("--artifacts DIR is required");
    if (!args.has_prompt) usage("--prompt is required");
    if (args.json.empty()) usage("--json OUT is required (the results go there)");
    return args;
}

struct Phase {
    std::string name;
    int64_t start_ns, end_ns, count;
    std::string unit;  // what count counts: image | token | none
};

std::string unavailable(const std::string& reason) {
    json::Writer w;
    return w.begin_object().field("unavailable", reason).end_object().str();
}

std::string vision_block(Pipeline& pipeline, const Args& args, std::vector<Phase>& phases) {
    if (!pipeline.has_vision()) return unavailable(pipeline.vision_unavailable());
    if (args.images.empty()) return unavailable("no image given (--image or --rgb)");
    const VisionBench b = pipeline.bench_vision(args.images.front(), args.warmup, args.runs);
    phases.push_back({"vision_cold", b.cold_start_ns, b.cold_end_ns, 1, "image"});
    phases.push_back({"vision_warm", b.warm_start_ns, b.warm_end_ns, args.runs, "image"});
    json::Writer w;
    w.begin_object().field("runtime", b.runtime).key("slice").begin_object();
    w.field("height", b.patches_h).field("width", b.patches_w).field("patches", b.patches_h * b.patches_w).end_object();
    w.field("cold_ms", b.cold_ms).field("warmup", args.warmup).key("warm_ms").numbers(b.warm_ms);
    return w.end_object().str();
}

// C ids: the e2e prompt's, repeated (real text and image rows' ids, and the same on every device)
std::vector<int64_t> context_ids(const std::vector<int64_t>& prompt, int64_t length) {
    std::vector<int64_t> ids(static_cast<size_t>(length));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = prompt[i % prompt.size()];
    return ids;
}

std::string context_block(PteDecoder& decoder, const std::vector<int64_t>& prompt, int64_t length, int decode_tokens,
                          std::vector<Phase>& phases) {
    const int64_t max_seq_len = decoder.max_seq_len();
    if (length + decode_tokens > max_seq_len)
        return unavailable("context " + std::to_string(length) + " + " + std::to_string(decode_tokens) +
                           " decode tokens exceeds the program's max_seq_len " + std::to_string(max_seq_len));
    const Sampling greedy;
    std::mt19937_64 rng(0);
    decoder.reset();
    const Embeddings embeds = decoder.embed(context_ids(prompt, length));
    const int64_t start = monotonic_ns();
    const std::vector<float>* logits = &decoder.step(embeds, 0);
    const int64_t prefilled = monotonic_ns();
    int64_t next = sample(*logits, greedy, rng);
    const int64_t first = monotonic_ns();
    phases.push_back({"prefill:" + std::to_string(length), start, prefilled, length, "token"});
    std::vector<double> step_ms;
    int64_t last = first;
    for (int i = 0; i < decode_tokens; ++i) {  // stop tokens ignored: always decode_tokens steps
        logits = &decoder.step(decoder.embed({next}), length + i);
        next = sample(*logits, greedy, rng);
        const int64_t now = monotonic_ns();
        step_ms.push_back((now - last) / 1e6);
        last = now;
    }
    phases.push_back({"decode:" + std::to_string(length), first, last, decode_tokens, "token"});
    const double prefill_ms = (prefilled - start) / 1e6, decode_ms = (last - first) / 1e6;
    json::Writer w;
    w.begin_object().field("prefill_tokens", length).field("prefill_ms", prefill_ms);
    w.field("prefill_tokens_per_s", length * 1000.0 / std::max(prefill_ms, 1e-9));
    w.field("ttft_ms", (first - start) / 1e6).key("decode_ms").numbers(step_ms);
    w.field("decode_tokens_per_s", decode_tokens * 1000.0 / std::max(decode_ms, 1e-9));
    return w.end_object().str();
}

std::string phases_json(const std::vector<Phase>& phases) {
    std::string items;
    for (const Phase& p : phases) {
        json::Writer one;
        one.begin_object().field("name", p.name).field("start_ns", p.start_ns).field("end_ns", p.end_ns);
        items += (items.empty() ? "" : ",") + one.field("count", p.count).field("unit", p.unit).end_object().str();
    }
    return "[" + items + "]";
}

int bench(const Args& args) {
    std::vector<Phase> phases;
    PipelineOptions options;
    options.vision = args.vision;
    options.verify = args.verify;
    options.mmap = args.mmap;
    options.threads = static_cast<size_t>(args.threads);
    if (!args.verify) std::cerr << "warning: --no-verify: artifact sha256 checks skipped\n";

    int64_t start = monotonic_ns();
    Pipeline pipeline(args.artifacts, options);
    phases.push_back({"load", start, monotonic_ns(), 1, "none"});
    const size_t threads = set_threads(0);  // 0 changes nothing: the count the pipeline set
    json::Writer load;
    load.begin_object().field("total_ms", pipeline.model_load_ms()).field("decoder_ms", pipeline.decoder_load_ms());
    if (pipeline.has_vision()) load.field("vision_ms", pipeline.vision_load_ms());
    else load.key("vision_ms").raw(unavailable(pipeline.vision_unavailable()));
    load.end_object();

    const std::string vision = vision_block(pipeline, args, phases);

    // without a vision encoder the image is left out: the text parts are still worth measuring
    const std::vector<RgbImage> images = pipeline.has_vision() ? args.images : std::vector<RgbImage>{};
    if (images.size() != args.images.size())
        std::cerr << "warning: e2e runs text-only: " << pipeline.vision_unavailable() << "\n";
    start = monotonic_ns();
    const RunResult e2e = pipeline.run(images, args.prompt, args.run);
    phases.push_back({"e2e", start, monotonic_ns(), static_cast<int64_t>(e2e.tokens.size()), "token"});
    std::cerr << "e2e: " << e2e.tokens.size() << " tokens: " << e2e.text << "\n";

    PteDecoder& decoder = pipeline.decoder();
    json::Writer contexts;
    contexts.begin_object();
    for (int64_t length : args.contexts) {
        contexts.key(std::to_string(length)).raw(context_block(decoder, e2e.prompt_ids, length, args.decode_tokens, phases));
    }
    contexts.end_object();

    json::Writer w;
    w.begin_object().field("schema", "urn:edgevlm:device-bench-result:1").field("clock", "CLOCK_MONOTONIC");
    w.field("threads", static_cast<int64_t>(threads)).key("phases").raw(phases_json(phases));
    w.key("load").raw(load.str()).key("e2e").raw(e2e.to_json()).key("vision").raw(vision);
    w.key("decoder").begin_object().field("max_seq_len", decoder.max_seq_len());
    w.field("decode_tokens", args.decode_tokens).key("contexts").raw(contexts.str()).end_object();
    w.field("peak_rss_bytes", static_cast<int64_t>(peak_rss_bytes())).end_object();
    write_file(args.json, w.str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return bench(parse(argc, argv));
    } catch (const UsageError& e) {
        usage(e.what());
    } catch (const std::exception& e) {  // the core's refusals say what to fix
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
