// Reading tokenizer.json into Tokenizer::Impl, refusing (with the reason) whatever this runtime
// would not tokenize exactly as `tokenizers` does.
#include <algorithm>
#include <cmath>

#include "tokenizer_impl.h"
#include "unicode.h"

namespace edgevlm {
namespace {

using json::Value;

struct Loader {
    const std::string& source;

    [[noreturn]] void fail(const std::string& what) const { throw TokenizerError(source + ": " + what); }

    const Value& member(const Value& object, const char* key, const char* where) const {
        const Value* v = object.find(key);
        if (!v) fail(std::string(where) + " has no \"" + key + "\"");
        return *v;
    }
    std::string text(const Value* v, const std::string& def = "") const {
        return v && v->is_string() ? v->string : def;
    }
    bool flag(const Value& object, const char* key, bool def = false) const {
        const Value* v = object.find(key);
        return v && v->type == Value::Type::Bool ? v->boolean : def;
    }
    int32_t id(const Value& v, const std::string& what) const {
        if (v.type != Value::Type::Number || v.number < 0 || v.number > INT32_MAX || std::floor(v.number) != v.number)
            fail(what + " has id " + v.string + ", not a non-negative integer");
        return static_cast<int32_t>(v.number);
    }

    void model(const Value& root, BpeModel& bpe) const {
        const Value& m = member(root, "model", "tokenizer.json");
        std::string type = text(m.find("type"), "BPE");
        if (type != "BPE") fail("model type is " + type + "; this runtime reads BPE tokenizers only");
        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
            if (!text(m.find(key)).empty()) fail(std::string("BPE with ") + key + " is not supported");
        if (const Value* d = m.find("dropout"); d && !d->is_null() && d->number != 0)
            fail("BPE dropout is not supported");
        if (flag(m, "byte_fallback")) fail("BPE byte_fallback is not supported");
        const Value& vocab = member(m, "vocab", "model");
        if (!vocab.is_object()) fail("model.vocab is not an object");
        for (const auto& [token, v] : vocab.object) bpe.vocab[token] = id(v, "vocab token " + token);
        const Value& merges = member(m, "merges", "model");
        if (!merges.is_array()) fail("model.merges is not an array");
        int32_t rank = 0;
        for (const Value& merge : merges.array) {
            std::string a, b;
            if (merge.is_string() && std::count(merge.string.begin(), merge.string.end(), ' ') == 1) {
                size_t space = merge.string.find(' ');
                a = merge.string.substr(0, space);
                b = merge.string.substr(space + 1);
            } else if (merge.is_array() && merge.array.size() == 2 && merge.array[0].is_string() &&
                       merge.array[1].is_string()) {
                a = merge.array[0].string;
                b = merge.array[1].string;
            } else {
                fail("merge " + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
            }
            auto ia = bpe.vocab.find(a), ib = bpe.vocab.find(b), iab = bpe.vocab.find(a + b);
            if (ia == bpe.vocab.end() || ib == bpe.vocab.end() || iab == bpe.vocab.end())
                fail("merge " + std::to_string(rank) + " (" + a + " " + b + ") uses a token missing from the vocab");
            bpe.merges.emplace(BpeModel::key(ia->second, ib->second), std::make_pair(rank++, iab->second));
        }
        if (std::string unk = text(m.find("unk_token")); !unk.empty()) {
            auto it = bpe.vocab.find(unk);
            if (it == bpe.vocab.end()) fail("unk_token " + unk + " is not in the vocab");
            bpe.unk = it->second;
        }
        bpe.fuse_unk = flag(m, "fuse_unk");
        bpe.ignore_merges = flag(m, "ignore_merges");
    }

    PreTokenizeStep step(const Value& p) const {
        std::string type = text(p.find("type"));
        PreTokenizeStep s;
        if (type == "ByteLevel") {
            s.byte_level = true;
            s.use_regex = flag(p, "use_regex", true);
            s.add_prefix_space = flag(p, "add_prefix_space", true);
            return s;
        }
        if (type != "Split") fail("pre-tokenizer " + type + " is not supported (ByteLevel and Split are)");
        const Value* pattern = p.find("pattern");
        const Value* regex = pattern ? pattern->find("Regex") : nullptr;
        if (!regex || !regex->is_string()) fail("a Split pre-tokenizer without a Regex pattern is not supported");
        auto known = pretokenize::recognise(regex->string);
        if (!known) fail("the Split regex " + regex->string + " is not one this runtime can match "
                         "(the GPT-2, Qwen2/Qwen3 and Llama-3 patterns are)");
        if (text(p.find("behavior")) != "Isolated" || flag(p, "invert"))
            fail("a Split pre-tokenizer must have behavior Isolated and invert false");
        s.pattern = *known;
        return s;
    }

    void pre_tokenizer(const Value& root, std::vector<PreTokenizeStep>& steps) const {
        const Value* p = root.find("pre_tokenizer");
        if (!p || p->is_null()) fail("no pre_tokenizer; a byte-level BPE needs ByteLevel");
        if (text(p->find("type")) == "Sequence") {
            const Value& list = member(*p, "pretokenizers", "Sequence pre-tokenizer");
            for (const Value& item : list.array) steps.push_back(step(item));
        } else {
            steps.push_back(step(*p));
        }
        if (steps.empty() || !steps.back().byte_level ||
            std::count_if(steps.begin(), steps.end(), [](auto& s) { return s.byte_level; }) != 1)
            fail("the pre-tokenizer must end in its one ByteLevel step (a byte-level BPE)");
    }

    void added_tokens(const Value& root, Tokenizer::Impl& impl) const {
        const Value* list = root.find("added_tokens");
        if (!list || list->is_null()) return;
        for (const Value& t : list->array) {
            std::string content = text(t.find("content"));
            if (content.empty()) fail("an added token has no content");
            AddedToken token{id(member(t, "id", "added token"), "added token " + content), content,
                             flag(t, "special"), flag(t, "normalized", !flag(t, "special")), flag(t, "lstrip"),
                             flag(t, "rstrip"), flag(t, "single_word"), content};
            // `tokenizers` matches a normalized token by its normalized form
            if (token.normalized && impl.nfc) token.match = unicode::nfc(content);
            impl.starts_added[token.normalized][static_cast<uint8_t>(token.match[0])] = true;
            impl.added_ids[content] = token.id;
            impl.added.push_back(token);
        }
        std::stable_sort(impl.added.begin(), impl.added.end(),
                         [](const AddedToken& a, const AddedToken& b) { return a.match.size() > b.match.size(); });
    }

    void checks(const Value& root, Tokenizer::Impl& impl) const {
        const Value* normalizer = root.find("normalizer");
        if (normalizer && !normalizer->is_null()) {
            std::string type = text(normalizer->find("type"), "?");
            if (type != "NFC") fail("normalizer " + type + " is not supported (NFC or none are)");
            impl.nfc = true;
        }
        const Value* decoder = root.find("decoder");
        if (!decoder || text(decoder->find("type")) != "ByteLevel") fail("the decoder must be ByteLevel");
    }
};

}  // namespace

Tokenizer::Impl load_tokenizer_json(const json::Value& root, const std::string& source) {
    Loader loader{source};
    if (!root.is_object()) loader.fail("not a JSON object");
    Tokenizer::Impl impl;
    impl.source = source;
    loader.model(root, impl.model);  // first: "not BPE" is the most telling refusal
    loader.checks(root, impl);
    loader.pre_tokenizer(root, impl.pre_tokenizer);
    loader.added_tokens(root, impl);

    // id -> token text and decoded bytes; added tokens win over the vocab, as in `tokenizers`
    int32_t max_id = -1;
    for (const auto& [token, i] : impl.model.vocab) max_id = std::max(max_id, i);
    for (const AddedToken& t : impl.added) max_id = std::max(max_id, t.id);
    size_t n = static_cast<size_t>(max_id) + 1;
    impl.id_tokens.assign(n, "");
    impl.id_bytes.assign(n, "");
    impl.has_token.assign(n, 0);
    impl.special.assign(n, 0);
    auto set = [&](int32_t i, const std::string& token) {
        impl.id_tokens[i] = token;
        impl.has_token[i] = 1;
        // ByteLevel decoding: a token with a character outside the byte alphabet stays as its text
        impl.id_bytes[i] = text_to_bytes(token).value_or(token);
    };
    for (const auto& [token, i] : impl.model.vocab) set(i, token);
    for (const AddedToken& t : impl.added) set(t.id, t.content);
    for (const AddedToken& t : impl.added)
        if (t.special) impl.special[t.id] = 1;
    return impl;
}

}  // namespace edgevlm
