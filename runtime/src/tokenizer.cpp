// Encode and decode: the added-token split, the pre-tokenizer steps, BPE, the ByteLevel decoder.
#include <fstream>
#include <sstream>

#include "tokenizer_impl.h"
#include "unicode.h"

namespace edgevlm {
namespace {

bool continuation(char c) { return (static_cast<uint8_t>(c) & 0xC0) == 0x80; }
size_t previous_boundary(std::string_view text, size_t i) {
    do --i; while (i > 0 && continuation(text[i]));
    return i;
}
size_t next_boundary(std::string_view text, size_t i) {
    do ++i; while (i < text.size() && continuation(text[i]));
    return i;
}

bool word_char(uint32_t cp) { return cp == '_' || unicode::is_letter(cp) || unicode::is_number(cp); }

// The code point that ends / starts `text` (valid UTF-8), or 0 when empty.
uint32_t last_codepoint(std::string_view text) {
    return text.empty() ? 0 : unicode::decode_utf8(text.substr(previous_boundary(text, text.size()))).front().value;
}
uint32_t first_codepoint(std::string_view text) {
    return text.empty() ? 0 : unicode::decode_utf8(text.substr(0, next_boundary(text, 0))).front().value;
}

}  // namespace

// Cuts `text` at the added tokens of one pass (normalized or not), leftmost-longest as the
// Aho-Corasick automaton of `tokenizers` finds them; special tokens are then skipped when not
// allowed, and lstrip/rstrip widen a match over the whitespace beside it.
std::vector<Segment> Tokenizer::Impl::split_added(const std::string& text, bool allow_special,
                                                  bool normalized_pass) const {
    std::vector<Segment> out;
    size_t plain_from = 0;  // start of the text not yet emitted
    size_t pos = 0;
    while (pos < text.size()) {
        const AddedToken* found = nullptr;
        size_t start = pos;
        for (; start < text.size() && !found; ++start) {
            if (!starts_added[normalized_pass][static_cast<uint8_t>(text[start])]) continue;
            for (const AddedToken& t : added)  // longest first
                if (t.normalized == normalized_pass && text.compare(start, t.match.size(), t.match) == 0) {
                    found = &t;
                    break;
                }
        }
        if (!found) break;
        --start;
        size_t stop = start + found->match.size();
        pos = stop;
        if (found->special && !allow_special) continue;
        const std::string_view view(text);
        if (found->single_word && ((start > 0 && word_char(last_codepoint(view.substr(0, start)))) ||
                                   (stop < text.size() && word_char(first_codepoint(view.substr(stop))))))
            continue;
        if (found->lstrip)  // not over text an earlier match took
            while (start > plain_from && unicode::is_whitespace(last_codepoint(view.substr(0, start))))
                start = previous_boundary(text, start);
        if (found->rstrip)
            while (stop < text.size() && unicode::is_whitespace(first_codepoint(view.substr(stop))))
                stop = next_boundary(text, stop);
        if (start > plain_from) out.push_back({text.substr(plain_from, start - plain_from), -1});
        out.push_back({"", found->id});
        plain_from = pos = stop;
    }
    if (plain_from < text.size()) out.push_back({text.substr(plain_from), -1});
    return out;
}

void Tokenizer::Impl::pre_tokenize_and_encode(const std::string& text, std::vector<int32_t>& out) const {
    std::vector<std::string> pieces{text};
    for (const PreTokenizeStep& step : pre_tokenizer) {
        std::vector<std::string> next;
        for (std::string& piece : pieces) {
            if (step.byte_level && step.add_prefix_space && piece[0] != ' ') piece.insert(0, 1, ' ');
            std::vector<std::string_view> parts{piece};
            if (!step.byte_level || step.use_regex)
                parts = pretokenize::split(piece, step.byte_level ? pretokenize::SplitPattern::Gpt2 : step.pattern);
            for (std::string_view part : parts) {
                if (part.empty()) continue;
                if (!step.byte_level) {
                    next.emplace_back(part);
                    continue;
                }
                std::string mapped;  // the byte-level alphabet: what the vocab is written in
                for (char c : part) mapped += byte_to_text(static_cast<uint8_t>(c));
                next.push_back(std::move(mapped));
            }
        }
        pieces = std::move(next);
    }
    for (const std::string& piece : pieces) model.encode(piece, out);
}

Tokenizer Tokenizer::load(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw TokenizerError("cannot open tokenizer file " + path);
    std::stringstream buffer;
    buffer << file.rdbuf();
    if (!file.good() && !file.eof()) throw TokenizerError("cannot read tokenizer file " + path);
    return from_json(buffer.str(), path);
}

Tokenizer Tokenizer::from_json(std::string_view text, const std::string& source) {
    json::Value root;
    try {
        root = json::parse(text);
    } catch (const std::invalid_argument& e) {
        throw TokenizerError(source + ": " + e.what());
    }
    return Tokenizer(std::make_shared<const Impl>(load_tokenizer_json(root, source)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
    size_t valid = unicode::valid_utf8_prefix(text);
    if (valid != text.size()) throw TokenizerError("text is not valid UTF-8 (at byte " + std::to_string(valid) + ")");
    std::vector<int32_t> ids;
    for (const Segment& raw : impl_->split_added(std::string(text), allow_special, false)) {
        if (raw.added_id >= 0) {
            ids.push_back(raw.added_id);
            continue;
        }
        // normalized added tokens match the normalized text
        std::string normalized = impl_->nfc ? unicode::nfc(raw.text) : raw.text;
        for (const Segment& seg : impl_->split_added(normalized, allow_special, true)) {
            if (seg.added_id >= 0) ids.push_back(seg.added_id);
            else impl_->pre_tokenize_and_encode(seg.text, ids);
        }
    }
    return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::string bytes;
    for (int32_t id : ids)
        if (!(skip_special && is_special(id))) bytes += token_bytes(id);
    return unicode::lossy_utf8(bytes, true);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
    if (auto it = impl_->added_ids.find(std::string(token)); it != impl_->added_ids.end()) return it->second;
    if (auto it = impl_->model.vocab.find(std::string(token)); it != impl_->model.vocab.end()) return it->second;
    return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_tokens.size() || !impl_->has_token[id]) return std::nullopt;
    return impl_->id_tokens[id];
}

bool Tokenizer::is_special(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}

size_t Tokenizer::vocab_size() const {
    size_t n = 0;
    for (uint8_t has : impl_->has_token) n += has;
    return n;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
    static const std::string none;
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_bytes.size() || !impl_->has_token[id]) return none;
    return impl_->id_bytes[id];
}

std::string StreamDecoder::push(int32_t id) {
    if (skip_special_ && tokenizer_->is_special(id)) return "";
    pending_ += tokenizer_->token_bytes(id);
    size_t held = 0;
    std::string text = unicode::lossy_utf8(pending_, false, &held);
    pending_.erase(0, pending_.size() - held);
    return text;
}

std::string StreamDecoder::finish() {
    std::string text = unicode::lossy_utf8(pending_, true);
    pending_.clear();
    return text;
}

}  // namespace edgevlm
