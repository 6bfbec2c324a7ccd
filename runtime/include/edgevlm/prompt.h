// Prompt assembly without a template engine: the manifest's prompt.assembly (the chat template
// rendered around the user turn at export) plus the image placeholders, exactly as
// edgevlm.preprocess.prompt builds them; and the image bounds of the tokenized prompt.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "edgevlm/manifest.h"

namespace edgevlm {

struct PromptError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One image's placeholder: [<image_id>i</image_id>]<image>unk*Q</image> + grid rows of <slice> cells.
std::string image_placeholder(const PromptAssembly& assembly, int query_num, const std::optional<Size>& grid,
                              int image_index);

// The whole prompt text for images with these grids (std::nullopt: unsliced) and the question.
std::string build_prompt(const PromptAssembly& assembly, int query_num, const std::vector<std::optional<Size>>& grids,
                         const std::string& question);

// Python's str.strip(): Unicode whitespace off both ends of UTF-8 text.
std::string strip_whitespace(const std::string& text);

struct BoundTokens {
    std::vector<int64_t> starts;  // <image>, <slice>
    std::vector<int64_t> ends;    // </image>, </slice>
    int64_t unk = 0;
};
BoundTokens bound_tokens(const Manifest& manifest);

// [start, end) of each run of query_num unk ids after an <image>/<slice> token; checks there are
// `expected` of them, as edgevlm.preprocess.prompt.tokenize does.
std::vector<std::pair<int64_t, int64_t>> image_bounds(const std::vector<int64_t>& ids, const BoundTokens& tokens,
                                                      int query_num, size_t expected);

}  // namespace edgevlm
