// The parts of a loaded tokenizer, shared by the files that implement edgevlm::Tokenizer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "edgevlm/tokenizer.h"
#include "json.h"
#include "pretokenize.h"

namespace edgevlm {

struct AddedToken {
    int32_t id;
    std::string content;
    bool special, normalized, lstrip, rstrip, single_word;
    std::string match;  // what is searched for: the content, normalized when `normalized`
};

// One step of the pre-tokenizer: a regex split, or ByteLevel (which may split with the GPT-2 regex).
struct PreTokenizeStep {
    bool byte_level = false;
    pretokenize::SplitPattern pattern = pretokenize::SplitPattern::Gpt2;
    bool use_regex = true;         // ByteLevel only
    bool add_prefix_space = false;  // ByteLevel only
};

struct BpeModel {
    std::unordered_map<std::string, int32_t> vocab;  // byte-level token text -> id
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (left id, right id) -> (rank, merged id)
    std::optional<int32_t> unk;
    bool fuse_unk = false;
    bool ignore_merges = false;  // a piece that is a whole vocab token skips the merges (Llama 3)

    static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
    // Appends the ids of one byte-level-mapped piece.
    void encode(const std::string& piece, std::vector<int32_t>& out) const;
};

// A segment of text left by the added-token split: plain text, or the id of an added token.
struct Segment {
    std::string text;
    int32_t added_id = -1;
};

struct Tokenizer::Impl {
    std::string source;
    BpeModel model;
    bool nfc = false;  // the normalizer (Qwen2/Qwen3 have NFC; Llama 3 none)
    std::vector<PreTokenizeStep> pre_tokenizer;
    std::vector<AddedToken> added;  // longest match text first, for leftmost-longest matching
    bool starts_added[2][256] = {};  // [normalized pass][byte]: some added token starts with it
    std::unordered_map<std::string, int32_t> added_ids;
    std::vector<std::string> id_tokens;   // id -> token text ("" and !has_token when none)
    std::vector<std::string> id_bytes;    // id -> what the ByteLevel decoder makes of it
    std::vector<uint8_t> has_token, special;

    std::vector<Segment> split_added(const std::string& text, bool allow_special, bool normalized_pass) const;
    void pre_tokenize_and_encode(const std::string& text, std::vector<int32_t>& out) const;
};

// GPT-2's byte <-> printable code point map (ByteLevel): byte b <-> the UTF-8 text of its char.
const std::string& byte_to_text(uint8_t b);
// The bytes a token's characters map back to, or nullopt if one character is outside the map.
std::optional<std::string> text_to_bytes(const std::string& token);

Tokenizer::Impl load_tokenizer_json(const json::Value& root, const std::string& source);

}  // namespace edgevlm
