// Hand-written matchers for three split regexes. At each position the alternatives are tried
// in the regex's order, with the backtracking a regex engine would do spelled out; every code
// point starts some alternative, so matches are consecutive and never empty.
#include "pretokenize.h"

#include "unicode.h"

namespace edgevlm::pretokenize {
namespace {

using unicode::Codepoint;

const char kGpt2[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char kQwen2[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kLlama3[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class Matcher {
public:
    Matcher(const std::vector<Codepoint>& cps, SplitPattern pattern) : cps_(cps), pattern_(pattern) {}

    // End (code point index) of the match that starts at i.
    size_t match(size_t i) const {
        if (size_t e = contraction(i)) return e;
        return pattern_ == SplitPattern::Gpt2 ? gpt2(i) : qwen_llama(i);
    }

private:
    const std::vector<Codepoint>& cps_;
    SplitPattern pattern_;

    uint32_t at(size_t i) const { return i < cps_.size() ? cps_[i].value : 0xFFFFFFFF; }
    bool letter(size_t i) const { return i < cps_.size() && unicode::is_letter(at(i)); }
    bool number(size_t i) const { return i < cps_.size() && unicode::is_number(at(i)); }
    bool space(size_t i) const { return i < cps_.size() && unicode::is_whitespace(at(i)); }
    bool other(size_t i) const { return i < cps_.size() && !space(i) && !letter(i) && !number(i); }
    bool newline(size_t i) const { return at(i) == '\r' || at(i) == '\n'; }
    template <class Pred>
    size_t run(size_t i, Pred pred) const {
        while (pred(i)) ++i;
        return i;
    }

    // Folds a code point as (?i) does for the letters of the contractions; U+017F (long s)
    // case-folds to 's'.
    uint32_t fold(uint32_t c) const {
        if (pattern_ == SplitPattern::Gpt2) return c;
        if (c >= 'A' && c <= 'Z') return c + 32;
        return c == 0x17F ? 's' : c;
    }

    // 's|'t|'re|'ve|'m|'ll|'d
    size_t contraction(size_t i) const {
        if (at(i) != '\'') return 0;
        uint32_t a = fold(at(i + 1)), b = fold(at(i + 2));
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        return 0;
    }

    // \s+(?!\S) then \s+: a whitespace run, less its last code point when a non-space follows
    size_t trailing_space(size_t i) const {
        size_t end = run(i, [&](size_t k) { return space(k); });
        if (end < cps_.size() && end - i > 1) return end - 1;
        return end;
    }

    // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+'
    size_t gpt2(size_t i) const {
        size_t j = at(i) == ' ' ? i + 1 : i;  // the optional leading space
        for (int cls = 0; cls < 3; ++cls) {
            auto in_class = [&](size_t k) { return cls == 0 ? letter(k) : cls == 1 ? number(k) : other(k); };
            if (in_class(j)) return run(j, in_class);
        }
        return trailing_space(i);
    }

    // '[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}(1 or {1,3})| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+'
    size_t qwen_llama(size_t i) const {
        auto is_letter = [&](size_t k) { return letter(k); };
        if (letter(i)) return run(i, is_letter);
        if (!newline(i) && !number(i) && letter(i + 1)) return run(i + 1, is_letter);
        if (number(i)) {
            size_t limit = pattern_ == SplitPattern::Qwen2 ? 1 : 3;
            size_t end = i + 1;
            while (end - i < limit && number(end)) ++end;
            return end;
        }
        size_t j = at(i) == ' ' && other(i + 1) ? i + 1 : i;
        if (other(j)) {
            size_t end = run(j, [&](size_t k) { return other(k); });
            return run(end, [&](size_t k) { return newline(k); });
        }
        // \s*[\r\n]+: the whitespace run up to and including its last \r or \n
        size_t end = run(i, [&](size_t k) { return space(k); });
        for (size_t k = end; k > i; --k)
            if (newline(k - 1)) return k;
        return trailing_space(i);
    }
};

}  // namespace

std::optional<SplitPattern> recognise(std::string_view regex) {
    for (SplitPattern p : {SplitPattern::Gpt2, SplitPattern::Qwen2, SplitPattern::Llama3})
        if (regex == regex_text(p)) return p;
    return std::nullopt;
}

const char* regex_text(SplitPattern pattern) {
    switch (pattern) {
        case SplitPattern::Gpt2: return kGpt2;
        case SplitPattern::Qwen2: return kQwen2;
        case SplitPattern::Llama3: return kLlama3;
    }
    return "";
}

std::vector<std::string_view> split(std::string_view text, SplitPattern pattern) {
    std::vector<Codepoint> cps = unicode::decode_utf8(text);
    Matcher matcher(cps, pattern);
    std::vector<std::string_view> pieces;
    for (size_t i = 0; i < cps.size();) {
        size_t end = matcher.match(i);
        size_t last = end - 1;
        pieces.push_back(text.substr(cps[i].offset, cps[last].offset + cps[last].length - cps[i].offset));
        i = end;
    }
    return pieces;
}

}  // namespace edgevlm::pretokenize
