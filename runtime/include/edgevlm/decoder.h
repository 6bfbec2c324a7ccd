// The decoder half of the native runtime: an ExecuTorch .pte with edgevlm's method convention
// (token_embedding, text_decoder, metadata methods; export/decoder/ in the Python package), and
// the generation loop of `edgevlm run` (export/run.py Pipeline.generate): prefill, greedy or
// temperature/top-p sampling, stop tokens and the same `stopped_by` reasons.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgevlm {

struct DecoderError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// [T, D] float32 rows, row-major
struct Embeddings {
    int64_t rows = 0;
    int64_t width = 0;
    std::vector<float> values;
    float* row(int64_t i) { return values.data() + i * width; }
};

class PteDecoder {
public:
    // mmap: map the program (the default) rather than read it into memory: the constants XNNPACK
    // does not repack stay in the page cache. On the 0.5B INT4 decoder here, 368 vs 523 MiB peak
    // RSS at the same decode speed (medians 81.8 vs 83.1 tok/s over 9 rounds, `edgevlm bench-runner`).
    explicit PteDecoder(const std::string& pte_path, bool mmap = true);
    ~PteDecoder();
    PteDecoder(const PteDecoder&) = delete;
    PteDecoder& operator=(const PteDecoder&) = delete;

    Embeddings embed(const std::vector<int64_t>& ids);
    // Logits [vocab] of the last row, after writing rows at cache positions start.. . The buffer is
    // the decoder's own, reused by the next step: a decode step allocates nothing of ours.
    const std::vector<float>& step(const Embeddings& embeds, int64_t start);
    void reset();  // an empty cache for a new conversation

    std::set<int64_t> stop_ids();  // the program's get_eos_ids metadata
    int64_t max_seq_len() const { return max_seq_len_; }
    int64_t vocab_size() const { return vocab_size_; }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    int64_t max_seq_len_ = 0;
    int64_t vocab_size_ = 0;
    bool used_ = false;
    std::vector<float> logits_;
};

struct Sampling {
    float temperature = 0.0f;  // 0: greedy (argmax, first maximum on ties)
    float top_p = 1.0f;
    uint64_t seed = 0;
};

// What one generation produced and where the time went (ExecuTorch LLM runner's stats names).
struct Generation {
    std::vector<int64_t> tokens;  // generated ids, the stop token included when hit
    std::string stopped_by;       // stop_token | max_new_tokens | max_seq_len
    int64_t prompt_tokens = 0;
    double prefill_ms = 0, decode_ms = 0;
    double first_token_ms = 0;  // prefill + the first sample, from the start of prefill
    int64_t decode_steps = 0;
};

// The loop of export/run.py Pipeline.generate over prompt embeddings (images already placed).
Generation generate(PteDecoder& decoder, const Embeddings& prompt, int max_new_tokens,
                    const std::set<int64_t>& stop_ids, const Sampling& sampling = {},
                    const std::function<void(int64_t)>& on_token = nullptr);

int64_t sample(const std::vector<float>& logits, const Sampling& sampling, std::mt19937_64& rng);

// ExecuTorch's threadpool (XNNPACK's workers): set to `count` threads (0 keeps the default);
// returns the count in use.
size_t set_threads(size_t count);

}  // namespace edgevlm
