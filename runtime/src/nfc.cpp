// Unicode Normalization Form C: full canonical decomposition, canonical ordering of combining
// marks, then canonical composition (UAX #15), over the generated tables plus Hangul arithmetic.
#include <algorithm>

#include "unicode.h"

namespace edgevlm::unicode {
namespace {

// Hangul syllables decompose into and compose from their jamo by arithmetic (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

uint8_t combining_class(uint32_t cp) {
    const CombiningClassRange* end = kCombiningClasses + kCombiningClasses_count;
    const CombiningClassRange* it = std::upper_bound(
        kCombiningClasses, end, cp, [](uint32_t v, const CombiningClassRange& r) { return v < r.first; });
    return it != kCombiningClasses && cp <= (it - 1)->last ? (it - 1)->ccc : 0;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp >= kSBase && cp < kSBase + kSCount) {
        uint32_t s = cp - kSBase;
        out.push_back(kLBase + s / kNCount);
        out.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount) out.push_back(kTBase + s % kTCount);
        return;
    }
    const Decomposition* end = kDecompositions + kDecompositions_count;
    const Decomposition* it =
        std::lower_bound(kDecompositions, end, cp, [](const Decomposition& d, uint32_t v) { return d.cp < v; });
    if (it == end || it->cp != cp) {
        out.push_back(cp);
        return;
    }
    for (uint32_t part : it->parts)
        if (part) out.push_back(part);
}

// The primary composite of (first, second), or 0.
uint32_t compose(uint32_t first, uint32_t second) {
    if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount)
        return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
    if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
        second < kTBase + kTCount)
        return first + (second - kTBase);
    const Composition* end = kCompositions + kCompositions_count;
    const Composition* it = std::lower_bound(kCompositions, end, std::make_pair(first, second),
                                             [](const Composition& c, const std::pair<uint32_t, uint32_t>& v) {
                                                 return std::make_pair(c.first, c.second) < v;
                                             });
    return it != end && it->first == first && it->second == second ? it->composite : 0;
}

}  // namespace

std::string nfc(std::string_view text) {
    std::vector<Codepoint> cps = decode_utf8(text);
    // Below U+0300 nothing decomposes into something that recomposes differently: a fast path.
    if (std::all_of(cps.begin(), cps.end(), [](const Codepoint& c) { return c.value < 0x300; }))
        return std::string(text);
    std::vector<uint32_t> chars;
    for (const Codepoint& c : cps) decompose(c.value, chars);
    // canonical ordering: a stable sort of each run of non-starters by combining class
    for (size_t i = 0; i < chars.size();) {
        size_t j = i;
        while (j < chars.size() && combining_class(chars[j])) ++j;
        std::stable_sort(chars.begin() + i, chars.begin() + j,
                         [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
        i = j > i ? j : i + 1;
    }
    // composition: a character joins the last starter unless a mark of the same or a higher
    // class (or a starter) stands between them
    std::vector<uint32_t> out;
    size_t starter = 0;
    int last_class = -1;  // -1: no starter yet
    for (uint32_t ch : chars) {
        int cc = combining_class(ch);
        if (last_class >= 0 && (last_class < cc || (last_class == 0 && out.size() == starter + 1))) {
            if (uint32_t composite = compose(out[starter], ch)) {
                out[starter] = composite;
                continue;
            }
        }
        if (cc == 0) {
            starter = out.size();
            last_class = 0;
        } else if (last_class >= 0) {
            last_class = cc;
        }
        out.push_back(ch);
    }
    std::string result;
    for (uint32_t ch : out) append_utf8(result, ch);
    return result;
}

}  // namespace edgevlm::unicode
