// The split regexes of the supported tokenizer families, matched by hand (std::regex has no
// \p{L}). Each pattern is recognised by its exact text in tokenizer.json.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgevlm::pretokenize {

enum class SplitPattern {
    Gpt2,    // ByteLevel's own regex (use_regex: true); GPT-2, the edgevlm presets
    Qwen2,   // Qwen2 / Qwen2.5 / Qwen3: single digits
    Llama3,  // Llama 3: digit runs of up to three
};

// The pattern whose regex text is `regex`, or nullopt for a pattern this runtime cannot match.
std::optional<SplitPattern> recognise(std::string_view regex);
const char* regex_text(SplitPattern pattern);

// `text` (valid UTF-8) cut into the regex's consecutive matches, as a find-all with the
// Isolated behaviour does; the pieces cover the text exactly.
std::vector<std::string_view> split(std::string_view text, SplitPattern pattern);

}  // namespace edgevlm::pretokenize
