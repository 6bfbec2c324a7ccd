// edgevlm-runner: runs exported artifacts without Python.
//
//   edgevlm-runner --pte FILE --tokens ID,ID,... [--max-new-tokens N] [--temperature T] [--top-p P]
//                  [--seed S] [--ignore-stop] [--threads N] [--json OUT]
// The decoder-only mode: prompt token ids in, generated ids out (one line), then where the time
// went on stderr; --json writes the ids and stats. (Image + prompt from an artifact folder's
// manifest joins when the tokenizer and prompt assembly land.)
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "edgevlm/decoder.h"

using namespace edgevlm;

namespace {

struct Args {
    std::string pte, json;
    std::vector<int64_t> tokens;
    int max_new_tokens = 32;
    bool ignore_stop = false;  // benchmarks: always generate max_new_tokens
    int threads = 0;           // ExecuTorch threadpool size; 0: its default
    Sampling sampling;
};

[[noreturn]] void usage(const std::string& problem) {
    std::cerr << "error: " << problem << "\n"
              << "usage: edgevlm-runner --pte FILE --tokens ID,ID,... [--max-new-tokens N] [--temperature T] "
                 "[--top-p P] [--seed S] [--ignore-stop] [--threads N] [--json OUT]\n";
    std::exit(2);
}

std::vector<int64_t> parse_ids(const std::string& text) {
    std::vector<int64_t> ids;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        char* end = nullptr;
        const long long value = std::strtoll(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0') usage("--tokens takes comma-separated integers, got `" + item + "`");
        ids.push_back(value);
    }
    if (ids.empty()) usage("--tokens is empty: give the prompt's token ids");
    return ids;
}

Args parse(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--ignore-stop") {
            args.ignore_stop = true;
            continue;
        }
        if (i + 1 >= argc) usage(flag + " needs a value");
        const std::string value = argv[++i];
        if (flag == "--pte") args.pte = value;
        else if (flag == "--tokens") args.tokens = parse_ids(value);
        else if (flag == "--max-new-tokens") args.max_new_tokens = std::atoi(value.c_str());
        else if (flag == "--temperature") args.sampling.temperature = std::strtof(value.c_str(), nullptr);
        else if (flag == "--top-p") args.sampling.top_p = std::strtof(value.c_str(), nullptr);
        else if (flag == "--seed") args.sampling.seed = std::strtoull(value.c_str(), nullptr, 10);
        else if (flag == "--json") args.json = value;
        else if (flag == "--threads") args.threads = std::atoi(value.c_str());
        else usage("unknown option " + flag);
    }
    if (args.pte.empty()) usage("--pte is required");
    if (args.tokens.empty()) usage("--tokens is required");
    if (args.max_new_tokens < 1) usage("--max-new-tokens must be at least 1");
    return args;
}

// This process's peak resident set (VmHWM, Linux): after exec it counts this program alone, where
// a parent's wait4 figure also holds the memory the parent had when it forked.
long long peak_rss_bytes() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
    return 0;
}

std::string ids_json(const std::vector<int64_t>& ids) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
    return out + "]";
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse(argc, argv);
    try {
        const size_t threads = set_threads(static_cast<size_t>(args.threads));
        const auto load_start = std::chrono::steady_clock::now();
        PteDecoder decoder(args.pte);
        const double load_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start).count();
        const std::set<int64_t> stop = args.ignore_stop ? std::set<int64_t>{} : decoder.stop_ids();
        const Generation g = generate(decoder, decoder.embed(args.tokens), args.max_new_tokens, stop, args.sampling);
        std::cout << ids_json(g.tokens) << "\n";
        const double decode_tps = g.decode_ms > 0 ? g.decode_steps * 1000.0 / g.decode_ms : 0.0;
        std::fprintf(stderr, "threads %zu, load %.0f ms, prefill %lld tokens in %.1f ms (%.1f tok/s), decode %lld tokens in "
                     "%.1f ms (%.1f tok/s), stopped by %s\n", threads, load_ms, static_cast<long long>(g.prompt_tokens),
                     g.prefill_ms, g.prompt_tokens * 1000.0 / g.prefill_ms, static_cast<long long>(g.decode_steps),
                     g.decode_ms, decode_tps, g.stopped_by.c_str());
        if (!args.json.empty()) {
            std::ofstream out(args.json);
            out << "{\"tokens\": " << ids_json(g.tokens) << ", \"stopped_by\": \"" << g.stopped_by
                << "\", \"prompt_tokens\": " << g.prompt_tokens << ", \"model_load_ms\": " << load_ms
                << ", \"prefill_ms\": " << g.prefill_ms << ", \"decode_ms\": " << g.decode_ms
                << ", \"decode_steps\": " << g.decode_steps << ", \"decode_tokens_per_s\": " << decode_tps
                << ", \"peak_rss_bytes\": " << peak_rss_bytes() << "}\n";
            if (!out) throw DecoderError("cannot write " + args.json);
        }
        return 0;
    } catch (const DecoderError& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
