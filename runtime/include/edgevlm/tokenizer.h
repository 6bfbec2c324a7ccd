// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json: the same ids as the
// `tokenizers` library (encode without the post-processor's BOS/EOS, as edgevlm prompts are
// built), the same text back from decode, and a streaming decoder for generation.
// Supported: model BPE (vocab, merges as "a b" or ["a", "b"], ignore_merges, unk_token),
// normalizer null, pre_tokenizer ByteLevel or Sequence[Split(<known regex>), ByteLevel]
// with the GPT-2, Qwen2/Qwen3 or Llama-3 split regex, decoder ByteLevel, added tokens
// (special or not; lstrip, rstrip, single_word). Anything else is refused at load.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace edgevlm {

// Every refusal: unreadable or unsupported tokenizer.json, text that is not valid UTF-8.
struct TokenizerError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Tokenizer {
public:
    static Tokenizer load(const std::string& path);  // a tokenizer.json file
    static Tokenizer from_json(std::string_view json, const std::string& source = "<memory>");

    // `allow_special`: special added tokens in the text become their ids (what `tokenizers`
    // does by default); false treats them as plain text (its encode_special_tokens = True).
    std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
    // Ids with no token (e.g. embedding rows past the vocabulary) are dropped, as `tokenizers` does;
    // invalid UTF-8 in the result becomes U+FFFD.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

    std::optional<int32_t> token_to_id(std::string_view token) const;
    std::optional<std::string> id_to_token(int32_t id) const;
    bool is_special(int32_t id) const;
    size_t vocab_size() const;  // with added tokens

    // The bytes `id` decodes to (possibly part of a UTF-8 sequence); empty for an unknown id.
    const std::string& token_bytes(int32_t id) const;

    struct Impl;

private:
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

// Decodes one id at a time: push() returns the text that is complete so far and holds back the
// bytes of a UTF-8 sequence the next ids may finish; finish() flushes them (as U+FFFD).
// The concatenated pieces equal Tokenizer::decode of all the ids.
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false)
        : tokenizer_(&tokenizer), skip_special_(skip_special) {}
    std::string push(int32_t id);
    std::string finish();

private:
    const Tokenizer* tokenizer_;
    bool skip_special_;
    std::string pending_;  // an incomplete UTF-8 sequence
};

}  // namespace edgevlm
