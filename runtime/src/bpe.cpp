// The byte-level alphabet and the BPE merge loop, as `tokenizers`' ByteLevel and BPE models do.
#include <array>
#include <climits>

#include "tokenizer_impl.h"
#include "unicode.h"

namespace edgevlm {
namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// take the code points from U+0100 upwards, so every byte has a visible, non-space character.
struct ByteMap {
    std::array<std::string, 256> text;
    std::unordered_map<uint32_t, uint8_t> byte_of;

    ByteMap() {
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            uint32_t cp = printable ? uint32_t(b) : next++;
            unicode::append_utf8(text[b], cp);
            byte_of[cp] = uint8_t(b);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}

}  // namespace

const std::string& byte_to_text(uint8_t b) { return byte_map().text[b]; }

std::optional<std::string> text_to_bytes(const std::string& token) {
    std::string out;
    for (const unicode::Codepoint& cp : unicode::decode_utf8(token)) {
        auto it = byte_map().byte_of.find(cp.value);
        if (it == byte_map().byte_of.end()) return std::nullopt;
        out += static_cast<char>(it->second);
    }
    return out;
}

// Merges the adjacent pair of lowest rank (leftmost on ties) until none is left: the order of
// `tokenizers`' priority queue, without its cache or dropout.
void BpeModel::encode(const std::string& piece, std::vector<int32_t>& out) const {
    if (ignore_merges) {
        if (auto it = vocab.find(piece); it != vocab.end()) {
            out.push_back(it->second);
            return;
        }
    }
    std::vector<int32_t> ids;
    bool last_unk = false;
    for (const unicode::Codepoint& cp : unicode::decode_utf8(piece)) {
        auto it = vocab.find(piece.substr(cp.offset, cp.length));
        if (it != vocab.end()) {
            ids.push_back(it->second);
            last_unk = false;
        } else if (unk && !(fuse_unk && last_unk)) {  // no unk token: the character is dropped
            ids.push_back(*unk);
            last_unk = true;
        }
    }
    auto rank_of = [&](size_t k) -> std::pair<int32_t, int32_t> {
        auto it = merges.find(key(ids[k], ids[k + 1]));
        return it == merges.end() ? std::pair<int32_t, int32_t>{INT32_MAX, -1} : it->second;
    };
    std::vector<std::pair<int32_t, int32_t>> ranks;  // ranks[k]: merge of ids[k], ids[k + 1]
    for (size_t k = 0; k + 1 < ids.size(); ++k) ranks.push_back(rank_of(k));
    while (!ranks.empty()) {
        size_t best = 0;
        for (size_t k = 1; k < ranks.size(); ++k)
            if (ranks[k].first < ranks[best].first) best = k;
        if (ranks[best].first == INT32_MAX) break;
        ids[best] = ranks[best].second;
        ids.erase(ids.begin() + best + 1);
        ranks.erase(ranks.begin() + best);
        if (best < ranks.size()) ranks[best] = rank_of(best);
        if (best > 0) ranks[best - 1] = rank_of(best - 1);
    }
    out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace edgevlm
