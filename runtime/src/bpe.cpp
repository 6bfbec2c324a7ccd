// The byte-level alphabet and the BPE merge loop, as `tokenizers`' ByteLevel and BPE models do.
#include <array>
#include <functional>
#include <queue>
#include <tuple>

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
// `tokenizers`' priority queue (without its cache or dropout). A heap over a linked list keeps a
// long piece (a page of Chinese is one \p{L}+ match) at O(n log n).
void BpeModel::encode(const std::string& piece, std::vector<int32_t>& out) const {
    if (ignore_merges) {
        if (auto it = vocab.find(piece); it != vocab.end()) {
            out.push_back(it->second);
            return;
        }
    }
    struct Symbol {
        int32_t id;
        int prev, next;  // -1 at the ends
        bool alive;
    };
    std::vector<Symbol> symbols;
    bool last_unk = false;
    for (const unicode::Codepoint& cp : unicode::decode_utf8(piece)) {
        auto it = vocab.find(piece.substr(cp.offset, cp.length));
        int32_t id;
        if (it != vocab.end()) {
            id = it->second;
            last_unk = false;
        } else if (unk && !(fuse_unk && last_unk)) {  // no unk token: the character is dropped
            id = *unk;
            last_unk = true;
        } else {
            continue;
        }
        int k = static_cast<int>(symbols.size());
        symbols.push_back({id, k - 1, -1, true});
        if (k > 0) symbols[k - 1].next = k;
    }
    using Candidate = std::tuple<int32_t, int, int32_t>;  // (rank, left position, merged id)
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    auto offer = [&](int left) {
        if (left < 0 || symbols[left].next < 0) return;
        auto it = merges.find(key(symbols[left].id, symbols[symbols[left].next].id));
        if (it != merges.end()) queue.emplace(it->second.first, left, it->second.second);
    };
    for (int k = 0; k + 1 < static_cast<int>(symbols.size()); ++k) offer(k);
    while (!queue.empty()) {
        auto [rank, left, merged] = queue.top();
        queue.pop();
        Symbol& a = symbols[left];
        if (!a.alive || a.next < 0) continue;
        auto it = merges.find(key(a.id, symbols[a.next].id));
        if (it == merges.end() || it->second.first != rank) continue;  // a stale candidate
        Symbol& b = symbols[a.next];
        a.id = merged;
        b.alive = false;
        a.next = b.next;
        if (a.next >= 0) symbols[a.next].prev = left;
        offer(a.prev);
        offer(left);
    }
    for (const Symbol& s : symbols)
        if (s.alive) out.push_back(s.id);
}

}  // namespace edgevlm
