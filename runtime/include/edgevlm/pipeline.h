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

private:
    std::vector<Embeddings> encode_images(const std::vector<RgbImage>& images, std::vector<std::optional<Size>>& grids,
                                          RunStats& stats);

    Manifest manifest_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<PteDecoder> decoder_;
    std::unique_ptr<VisionEncoder> vision_;
    std::string vision_unavailable_;  // why no vision encoder was opened, for an image request
    double model_load_ms_ = 0;
};

}  // namespace edgevlm
