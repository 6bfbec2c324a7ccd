// UTF-8 decoding, validation and lossy repair; class lookups over the generated range tables.
#include "unicode.h"

#include <algorithm>
#include <stdexcept>

namespace edgevlm::unicode {
namespace {

bool in_ranges(const CodepointRange* table, size_t count, uint32_t cp) {
    const CodepointRange* end = table + count;
    const CodepointRange* it = std::upper_bound(table, end, cp,
                                                [](uint32_t v, const CodepointRange& r) { return v < r.first; });
    return it != table && cp <= (it - 1)->last;
}

// Length of the valid UTF-8 sequence starting at text[i] (1..4), or 0 if there is none; then
// `*prefix` is how many bytes from i began a sequence validly (0 for a byte that cannot start one):
// the maximal invalid subpart, or an incomplete sequence when the text ends right after it.
size_t sequence_length(std::string_view text, size_t i, size_t* prefix) {
    const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
    uint8_t b0 = byte(i);
    *prefix = 0;
    if (b0 < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode Table 3-7)
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else return 0;
    size_t k = 1;
    for (; k < need && i + k < text.size(); ++k) {
        uint8_t b = byte(i + k);
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) break;
    }
    if (k == need) return need;
    *prefix = k;  // bytes that started a sequence validly
    return 0;
}

}  // namespace

bool is_letter(uint32_t cp) { return in_ranges(kLetterRanges, kLetterRanges_count, cp); }
bool is_number(uint32_t cp) { return in_ranges(kNumberRanges, kNumberRanges_count, cp); }
bool is_whitespace(uint32_t cp) { return in_ranges(kWhitespaceRanges, kWhitespaceRanges_count, cp); }

std::vector<Codepoint> decode_utf8(std::string_view text) {
    std::vector<Codepoint> out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        size_t prefix;
        size_t n = sequence_length(text, i, &prefix);
        if (n == 0) throw std::invalid_argument("invalid UTF-8 at byte " + std::to_string(i));
        uint32_t cp = static_cast<uint8_t>(text[i]);
        if (n > 1) {
            cp &= 0xFF >> (n + 1);
            for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3F);
        }
        out.push_back({cp, i, n});
        i += n;
    }
    return out;
}

size_t valid_utf8_prefix(std::string_view text) {
    size_t i = 0;
    while (i < text.size()) {
        size_t prefix;
        size_t n = sequence_length(text, i, &prefix);
        if (n == 0) break;
        i += n;
    }
    return i;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

std::string lossy_utf8(std::string_view bytes, bool final, size_t* held) {
    std::string out;
    out.reserve(bytes.size());
    if (held) *held = 0;
    for (size_t i = 0; i < bytes.size();) {
        size_t prefix;
        size_t n = sequence_length(bytes, i, &prefix);
        if (n) {
            out.append(bytes.substr(i, n));
            i += n;
            continue;
        }
        if (!final && prefix && i + prefix == bytes.size()) {  // may complete with the next bytes
            if (held) *held = prefix;
            break;
        }
        out += "\xEF\xBF\xBD";  // U+FFFD for the maximal invalid subpart
        i += prefix ? prefix : 1;
    }
    return out;
}

}  // namespace edgevlm::unicode
