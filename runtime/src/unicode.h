// UTF-8 and the Unicode classes the pre-tokenizer regexes use. Internal to the runtime.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgevlm::unicode {

struct CodepointRange {
    uint32_t first;
    uint32_t last;  // inclusive
};

// Generated tables (unicode_tables.cpp, from tools/gen_unicode_tables.py), sorted, disjoint.
extern const CodepointRange kLetterRanges[];
extern const size_t kLetterRanges_count;
extern const CodepointRange kNumberRanges[];
extern const size_t kNumberRanges_count;
extern const CodepointRange kWhitespaceRanges[];
extern const size_t kWhitespaceRanges_count;

// NFC tables (unicode_nfc_tables.cpp, same generator); Hangul syllables are left to arithmetic.
struct Decomposition {
    uint32_t cp;
    uint32_t parts[4];  // the full canonical decomposition, zero-padded
};
struct CombiningClassRange {
    uint32_t first, last;
    uint8_t ccc;
};
struct Composition {
    uint32_t first, second, composite;
};
extern const Decomposition kDecompositions[];
extern const size_t kDecompositions_count;
extern const CombiningClassRange kCombiningClasses[];
extern const size_t kCombiningClasses_count;
extern const Composition kCompositions[];
extern const size_t kCompositions_count;

// Unicode Normalization Form C of valid UTF-8 text (what the NFC normalizer of Qwen2/Qwen3 does).
std::string nfc(std::string_view text);

bool is_letter(uint32_t cp);      // \p{L}
bool is_number(uint32_t cp);      // \p{N}
bool is_whitespace(uint32_t cp);  // \s

// One code point of valid UTF-8 text and where it sits in the byte string.
struct Codepoint {
    uint32_t value;
    size_t offset;
    size_t length;
};

// Code points of `text`; throws std::invalid_argument naming the byte offset if it is not valid UTF-8.
std::vector<Codepoint> decode_utf8(std::string_view text);

// Index of the first byte where `text` stops being valid UTF-8, or text.size().
size_t valid_utf8_prefix(std::string_view text);

void append_utf8(std::string& out, uint32_t cp);

// How Rust's String::from_utf8_lossy (and Python's errors="replace") repairs bytes: each maximal
// invalid subpart becomes one U+FFFD. With `final == false` a trailing incomplete but still
// possible sequence is not repaired; its length is returned through `held` for the caller to keep.
std::string lossy_utf8(std::string_view bytes, bool final, size_t* held = nullptr);

}  // namespace edgevlm::unicode
