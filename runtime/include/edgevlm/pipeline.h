// Image + question -> text from an `edgevlm export` folder alone: the native twin of
// `edgevlm run` (export/run.py). Manifest and sha256 checks, preprocessing, the vision encoder per
// slice, prompt assembly and tokenization, embeddings placed at the image bounds, generation.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "edgevlm/decoder.h"
#include "edgevlm/manifest.h"
#include "edgevlm/preprocess.h"
#include "edgevlm/tokenizer.h"
#include "edgevlm/vision.h"

namespace edgevlm {

struct PipelineOptions {
    // auto: the vision artifact `edgevlm run` picks (most faithful runnable ONNX one), else the
    // decoder .pte's vision_encoder; pte: that method; or a vision artifact's file name.
    std::string vision = "auto";
    bool verify = true;  // sha256 of every file loaded, against the manifest
    size_t threads = 0;  // ExecuTorch threadpool size; 0 keeps its default
    bool mmap = true;    // map the decoder program (less resident memory than reading it, same speed)
};

struct RunOptions {
    int max_new_tokens = 32;
    Sampling sampling;
    bool ignore_stop = false;  // benchmarks: always generate max_new_tokens
};

// Where the time went, named as ExecuTorch's LLM runner stats where one exists.
struct RunStats {
    double model_load_ms = 0;
    double preprocess_ms = 0;                  // slicing, resize, patches
    std::vector<double> vision_slice_ms;       // one per slice, in placeholder order
    double vision_ms = 0;
    double token_encode_ms = 0;                // prompt assembly + tokenizer
    int64_t prompt_tokens = 0, generated_tokens = 0;
    double prefill_ms = 0, time_to_first_token_ms = 0;  // TTFT: from the request to the first token
    double decode_ms = 0;
    int64_t decode_steps = 0;
    std::string stopped_by, vision_runtime;
    std::string to_json() const;  // fields above plus the rates
};

struct RunResult {
    std::string text;                 // the generated text, stop and special tokens left out
    std::vector<int64_t> tokens;      // generated ids, the stop token included when hit
    std::vector<int64_t> prompt_ids;
    RunStats stats;
    // urn:edgevlm:runner-result:1 (runtime/schemas/runner_result.schema.json); the process's peak
    // RSS when given (>= 0).
    std::string to_json(int64_t peak_rss_bytes = -1) const;
};

// What Pipeline::bench_vision measured: the largest slice of one image, encoded first cold (the
// first encode since load), then `warmup` untimed and `runs` timed times. Times in ms; the
// timestamps (monotonic_ns) bound the cold encode and the timed runs, for energy attribution.
struct VisionBench {
    int patches_h = 0, patches_w = 0;
    std::string runtime;
    double cold_ms = 0;
    std::vector<double> warm_ms;
    int64_t cold_start_ns = 0, cold_end_ns = 0, warm_start_ns = 0, warm_end_ns = 0;
};

// clock_gettime(CLOCK_MONOTONIC) in ns: the clock edgevlm-bench and edgevlm-power-sampler share.
int64_t monotonic_ns();

class Pipeline {
public:
    Pipeline(const std::string& artifact_dir, const PipelineOptions& options = {});
    ~Pipeline();

    // on_text receives the text as it is generated (UTF-8 sequences never split).
    RunResult run(const std::vector<RgbImage>& images, const std::string& question, const RunOptions& options = {},
                  const std::function<void(const std::string&)>& on_text = nullptr);

    const Manifest& manifest() const { return manifest_; }
    std::string vision_description() const;
    double model_load_ms() const { return model_load_ms_; }
    double decoder_load_ms() const { return decoder_load_ms_; }  // opening the decoder program
    double vision_load_ms() const { return vision_load_ms_; }    // opening the vision encoder; 0 without one
    bool has_vision() const { return vision_ != nullptr; }
    const std::string& vision_unavailable() const { return vision_unavailable_; }  // why has_vision() is false
    PteDecoder& decoder() { return *decoder_; }  // for benchmarks that drive the decoder directly

    // Throws VisionError (with vision_unavailable()) when there is no vision encoder.
    VisionBench bench_vision(const RgbImage& image, int warmup, int runs);

private:
    std::vector<Embeddings> encode_images(const std::vector<RgbImage>& images, std::vector<std::optional<Size>>& grids,
                                          RunStats& stats);

    Manifest manifest_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<PteDecoder> decoder_;
    std::unique_ptr<VisionEncoder> vision_;
    std::string vision_unavailable_;  // why no vision encoder was opened, for an image request
    double model_load_ms_ = 0, decoder_load_ms_ = 0, vision_load_ms_ = 0;
};

}  // namespace edgevlm
