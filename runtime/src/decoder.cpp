// PteDecoder over ExecuTorch's Module (the prebuilt runtime in the executorch wheel) and the
// generation loop. edgevlm's INT4-cache kernels are compiled into the same binary (CMakeLists),
// so their static registrations run before any program loads.
#include "edgevlm/decoder.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

// The wheel ships libexecutorch_threadpool.so but not its header: these declarations match the
// library's exported symbols (ExecuTorch's extension/threadpool/threadpool.h).
namespace executorch::extension::threadpool {
class ThreadPool {
public:
    size_t get_thread_count() const;
    void _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace edgevlm {

namespace et = executorch;

size_t set_threads(size_t count) {
    auto* pool = et::extension::threadpool::get_threadpool();
    if (pool == nullptr) return 0;
    if (count > 0 && count != pool->get_thread_count()) pool->_unsafe_reset_threadpool(static_cast<uint32_t>(count));
    return pool->get_thread_count();
}
using et::extension::Module;

namespace {

constexpr const char* kEmbedMethod = "token_embedding";  // export/decoder: the runner convention
constexpr const char* kDecoderMethod = "text_decoder";

std::string error_name(et::runtime::Error error) {
    return "ExecuTorch error " + std::to_string(static_cast<int>(error));
}

int64_t int_metadata(Module& module, const char* method) {
    auto value = module.get(method);
    if (!value.ok() || !value->isInt())
        throw DecoderError(std::string("the .pte has no integer metadata method ") + method +
                           ": re-export it with `edgevlm export` (a decoder .pte carries it)");
    return value->toInt();
}

void check_prompt_fits(int64_t tokens, int64_t max_seq_len) {
    if (tokens >= max_seq_len)
        throw DecoderError("the prompt is " + std::to_string(tokens) + " tokens and the decoder's cache holds " +
                           std::to_string(max_seq_len) +
                           ": use fewer or smaller images, a shorter question, or export with a larger max_seq_len");
}

}  // namespace

struct PteDecoder::Impl {
    std::string path;
    std::unique_ptr<Module> module;

    void load_methods() {
        for (const char* method : {kEmbedMethod, kDecoderMethod}) {
            const auto error = module->load_method(method);
            if (error != et::runtime::Error::Ok)
                throw DecoderError(std::string("cannot load method `") + method + "` of " + path + " (" +
                                   error_name(error) + "). If the log above names a missing llama:: operator, "
                                   "the program uses ExecuTorch's LLM custom ops, which the prebuilt runtime does "
                                   "not carry: export with the recipe's decoder `attention: static`, or an INT4 "
                                   "cache (`kv_cache: int4`, whose kernels are edgevlm's own)");
        }
    }
};

PteDecoder::PteDecoder(const std::string& pte_path, bool mmap) : impl_(std::make_unique<Impl>()) {
    impl_->path = pte_path;
    impl_->module = std::make_unique<Module>(pte_path, mmap ? Module::LoadMode::Mmap : Module::LoadMode::File);
    const auto error = impl_->module->load();
    if (error != et::runtime::Error::Ok)
        throw DecoderError("cannot load " + pte_path + " (" + error_name(error) +
                           "): not an ExecuTorch program, or written by an incompatible ExecuTorch");
    impl_->load_methods();
    max_seq_len_ = int_metadata(*impl_->module, "get_max_seq_len");
    auto meta = impl_->module->method_meta(kEmbedMethod);
    if (!meta.ok()) throw DecoderError("the .pte lacks token_embedding's metadata");
    vocab_size_ = int_metadata(*impl_->module, "get_vocab_size");
}

PteDecoder::~PteDecoder() = default;

std::set<int64_t> PteDecoder::stop_ids() {
    auto out = impl_->module->execute("get_eos_ids");
    if (!out.ok()) throw DecoderError("the .pte has no get_eos_ids metadata method: re-export it");
    std::set<int64_t> ids;
    for (const auto& value : *out)
        if (value.isInt()) ids.insert(value.toInt());
    return ids;
}

Embeddings PteDecoder::embed(const std::vector<int64_t>& ids) {
    check_prompt_fits(static_cast<int64_t>(ids.size()), max_seq_len_);  // the method's shape bound too
    std::vector<int64_t> tokens(ids);
    for (int64_t id : tokens)
        if (id < 0 || id >= vocab_size_)
            throw DecoderError("token id " + std::to_string(id) + " is outside the vocabulary (" +
                               std::to_string(vocab_size_) + ")");
    auto input = et::extension::from_blob(tokens.data(), {1, static_cast<int>(tokens.size())},
                                          et::aten::ScalarType::Long);
    auto out = impl_->module->execute(kEmbedMethod, input);
    if (!out.ok()) throw DecoderError("token_embedding failed: " + error_name(out.error()));
    const auto& tensor = out->at(0).toTensor();
    Embeddings result;
    result.rows = tensor.size(1);
    result.width = tensor.size(2);
    const float* data = tensor.const_data_ptr<float>();
    result.values.assign(data, data + result.rows * result.width);
    return result;
}

const std::vector<float>& PteDecoder::step(const Embeddings& embeds, int64_t start) {
    if (start + embeds.rows > max_seq_len_)
        throw DecoderError("positions " + std::to_string(start) + ".." + std::to_string(start + embeds.rows - 1) +
                           " are past the decoder's cache (" + std::to_string(max_seq_len_) + " positions)");
    std::vector<int64_t> position{start};
    // the method reads its inputs only: the caller's rows are passed without a copy
    auto x = et::extension::from_blob(const_cast<float*>(embeds.values.data()),
                                      {1, static_cast<int>(embeds.rows), static_cast<int>(embeds.width)});
    auto pos = et::extension::from_blob(position.data(), {1}, et::aten::ScalarType::Long);
    auto out = impl_->module->execute(kDecoderMethod, {x, pos});
    if (!out.ok()) throw DecoderError("text_decoder failed: " + error_name(out.error()));
    used_ = true;
    const auto& logits = out->at(0).toTensor();
    const float* data = logits.const_data_ptr<float>();
    logits_.assign(data, data + logits.numel());
    return logits_;
}

void PteDecoder::reset() {
    if (!used_) return;  // a freshly loaded method has a zeroed cache
    impl_->module->unload_method(kDecoderMethod);  // reloading re-initialises the mutable cache buffers
    const auto error = impl_->module->load_method(kDecoderMethod);
    if (error != et::runtime::Error::Ok) throw DecoderError("reloading text_decoder failed: " + error_name(error));
    used_ = false;
}

int64_t sample(const std::vector<float>& logits, const Sampling& sampling, std::mt19937_64& rng) {
    if (sampling.temperature <= 0.0f)  // first maximum, as torch/numpy argmax
        return std::max_element(logits.begin(), logits.end()) - logits.begin();
    const float peak = *std::max_element(logits.begin(), logits.end());
    std::vector<double> probs(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) probs[i] = std::exp((logits[i] - peak) / sampling.temperature);
    const double total = std::accumulate(probs.begin(), probs.end(), 0.0);
    std::vector<int64_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return probs[a] > probs[b]; });
    double kept = 0.0;
    size_t count = 0;
    while (count < order.size() && (count == 0 || kept < sampling.top_p * total)) kept += probs[order[count++]];
    double draw = std::uniform_real_distribution<double>(0.0, kept)(rng);
    for (size_t i = 0; i < count; ++i) {
        draw -= probs[order[i]];
        if (draw <= 0.0) return order[i];
    }
    return order[count - 1];
}

Generation generate(PteDecoder& decoder, const Embeddings& prompt, int max_new_tokens,
                    const std::set<int64_t>& stop_ids, const Sampling& sampling,
                    const std::function<void(int64_t)>& on_token) {
    using clock = std::chrono::steady_clock;
    check_prompt_fits(prompt.rows, decoder.max_seq_len());
    Generation result;
    result.prompt_tokens = prompt.rows;
    result.stopped_by = "max_new_tokens";
    std::mt19937_64 rng(sampling.seed);
    decoder.reset();
    int64_t position = prompt.rows;
    const auto start = clock::now();
    const std::vector<float>* logits = &decoder.step(prompt, 0);
    const auto prefilled = clock::now();
    for (int i = 0; i < max_new_tokens; ++i) {
        const int64_t next = sample(*logits, sampling, rng);
        if (i == 0) result.first_token_ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
        result.tokens.push_back(next);
        if (stop_ids.count(next)) {
            result.stopped_by = "stop_token";
            break;
        }
        if (on_token) on_token(next);
        if (position >= decoder.max_seq_len()) {  // produced, but the cache has no slot to feed it
            result.stopped_by = "max_seq_len";
            break;
        }
        logits = &decoder.step(decoder.embed({next}), position);
        ++position;
    }
    const auto done = clock::now();
    result.prefill_ms = std::chrono::duration<double, std::milli>(prefilled - start).count();
    result.decode_ms = std::chrono::duration<double, std::milli>(done - prefilled).count();
    result.decode_steps = position - prompt.rows;
    return result;
}

}  // namespace edgevlm
