#include "edgevlm/prompt.h"

#include <algorithm>

namespace edgevlm {

namespace {

constexpr const char* kImageMark = "(<image>./</image>)";  // chat()'s per-image mark in the user turn

// Length of the UTF-8 whitespace character at text[i] (Python's str.isspace set), or 0.
size_t whitespace_at(const std::string& text, size_t i) {
    const auto byte = [&](size_t k) { return k < text.size() ? static_cast<unsigned char>(text[k]) : 0u; };
    const unsigned c0 = byte(i);
    if (c0 == ' ' || (c0 >= 0x09 && c0 <= 0x0d) || (c0 >= 0x1c && c0 <= 0x1f)) return 1;
    if (c0 == 0xc2 && (byte(i + 1) == 0x85 || byte(i + 1) == 0xa0)) return 2;  // U+0085, U+00A0
    if (c0 == 0xe1 && byte(i + 1) == 0x9a && byte(i + 2) == 0x80) return 3;     // U+1680
    if (c0 == 0xe2 && byte(i + 1) == 0x80) {
        const unsigned c2 = byte(i + 2);  // U+2000..200A, U+2028, U+2029, U+202F
        if ((c2 >= 0x80 && c2 <= 0x8a) || c2 == 0xa8 || c2 == 0xa9 || c2 == 0xaf) return 3;
    }
    if (c0 == 0xe2 && byte(i + 1) == 0x81 && byte(i + 2) == 0x9f) return 3;  // U+205F
    if (c0 == 0xe3 && byte(i + 1) == 0x80 && byte(i + 2) == 0x80) return 3;  // U+3000
    return 0;
}

// Start of the UTF-8 character that ends just before `end`.
size_t previous_char(const std::string& text, size_t end) {
    size_t i = end - 1;
    while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xc0) == 0x80) --i;
    return i;
}

std::string repeat(const std::string& text, int times) {
    std::string out;
    for (int i = 0; i < times; ++i) out += text;
    return out;
}

}  // namespace

std::string strip_whitespace(const std::string& text) {
    size_t begin = 0, end = text.size();
    while (begin < end) {
        const size_t n = whitespace_at(text, begin);
        if (n == 0) break;
        begin += n;
    }
    while (end > begin) {
        const size_t start = previous_char(text, end);
        if (whitespace_at(text, start) != end - start) break;
        end = start;
    }
    return text.substr(begin, end - begin);
}

std::string image_placeholder(const PromptAssembly& a, int query_num, const std::optional<Size>& grid,
                              int image_index) {
    const std::string unk = repeat(a.unk_token, query_num);
    std::string text = "<image>" + unk + "</image>";
    if (a.image_id) text = "<image_id>" + std::to_string(image_index) + "</image_id>" + text;
    if (!a.slice_mode || !grid) return text;
    const std::string row = repeat("<slice>" + unk + "</slice>", grid->width);  // grid: (cols, rows)
    for (int r = 0; r < grid->height; ++r) text += (r ? a.line_separator : "") + row;
    return text;
}

std::string build_prompt(const PromptAssembly& a, int query_num, const std::vector<std::optional<Size>>& grids,
                         const std::string& question) {
    if (question.find(kImageMark) != std::string::npos)
        throw PromptError(std::string("the question holds the image mark ") + kImageMark +
                          ": do not write it in the question (images are passed separately)");
    std::string content;
    for (size_t i = 0; i < grids.size(); ++i)
        content += image_placeholder(a, query_num, grids[i], static_cast<int>(i)) + a.line_separator;
    content += question;
    return a.prefix + (a.trimmed ? strip_whitespace(content) : content) + a.suffix;
}

BoundTokens bound_tokens(const Manifest& m) {
    const PromptAssembly a = m.assembly.value_or(PromptAssembly{});
    return {{m.special_token("<image>"), m.special_token("<slice>")},
            {m.special_token("</image>"), m.special_token("</slice>")},
            m.special_token(a.unk_token)};
}

std::vector<std::pair<int64_t, int64_t>> image_bounds(const std::vector<int64_t>& ids, const BoundTokens& tokens,
                                                      int query_num, size_t expected) {
    const auto is = [](const std::vector<int64_t>& set, int64_t id) {
        return std::find(set.begin(), set.end(), id) != set.end();
    };
    std::vector<int64_t> starts, ends;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (is(tokens.starts, ids[i])) starts.push_back(static_cast<int64_t>(i) + 1);
        if (is(tokens.ends, ids[i])) ends.push_back(static_cast<int64_t>(i));
    }
    const std::string fix = ": do not write <image>, </image>, <slice>, </slice> or unk tokens in the question";
    if (starts.size() != ends.size())
        throw PromptError("the prompt has " + std::to_string(starts.size()) + " image/slice openings but " +
                          std::to_string(ends.size()) + " closings" + fix);
    std::vector<std::pair<int64_t, int64_t>> bounds;
    for (size_t k = 0; k < starts.size(); ++k) {
        const int64_t start = starts[k], end = ends[k];
        const int64_t following = k + 1 < starts.size() ? starts[k + 1] : static_cast<int64_t>(ids.size()) + 1;
        bool all_unk = end >= start;
        for (int64_t i = start; all_unk && i < end; ++i) all_unk = ids[i] == tokens.unk;
        if (end - start != query_num || end >= following || !all_unk)
            throw PromptError("image placeholder " + std::to_string(k) + " spans tokens " + std::to_string(start) +
                              ".." + std::to_string(end) + ", not " + std::to_string(query_num) + " unk tokens" + fix);
        bounds.emplace_back(start, end);
    }
    if (bounds.size() != expected)
        throw PromptError("the prompt has " + std::to_string(bounds.size()) + " image placeholders for " +
                          std::to_string(expected) + " vision outputs" + fix);
    return bounds;
}

}  // namespace edgevlm
