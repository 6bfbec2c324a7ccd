// Recursive-descent JSON parser (RFC 8259), with a nesting limit so hostile input cannot
// overflow the stack. Strings are decoded to UTF-8, \u surrogate pairs joined.
#include "json.h"

#include <cstdlib>
#include <stdexcept>

#include "unicode.h"

namespace edgevlm::json {
namespace {

constexpr int kMaxDepth = 256;

class Parser {
public:
    explicit Parser(std::string_view text) : text_(text) {}

    Value document() {
        Value v = value(0);
        skip_space();
        if (pos_ != text_.size()) fail("trailing characters");
        return v;
    }

private:
    std::string_view text_;
    size_t pos_ = 0;

    [[noreturn]] void fail(const std::string& what) const {
        throw std::invalid_argument("JSON: " + what + " at byte " + std::to_string(pos_));
    }
    void skip_space() {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' ||
                                       text_[pos_] == '\t'))
            ++pos_;
    }
    char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
    void expect(char c) {
        if (peek() != c) fail(std::string("expected '") + c + "'");
        ++pos_;
    }
    void literal(std::string_view word) {
        if (text_.substr(pos_, word.size()) != word) fail("invalid literal");
        pos_ += word.size();
    }

    Value value(int depth) {
        if (depth > kMaxDepth) fail("nesting too deep");
        skip_space();
        Value v;
        switch (peek()) {
            case '{': object(v, depth); break;
            case '[': array(v, depth); break;
            case '"': v.type = Value::Type::String; v.string = string(); break;
            case 't': literal("true"); v.type = Value::Type::Bool; v.boolean = true; break;
            case 'f': literal("false"); v.type = Value::Type::Bool; break;
            case 'n': literal("null"); break;
            default: number(v);
        }
        return v;
    }

    void object(Value& v, int depth) {
        v.type = Value::Type::Object;
        ++pos_;
        skip_space();
        if (peek() == '}') { ++pos_; return; }
        for (;;) {
            skip_space();
            std::string key = string();
            skip_space();
            expect(':');
            v.object.emplace_back(std::move(key), value(depth + 1));
            skip_space();
            if (peek() == ',') { ++pos_; continue; }
            expect('}');
            return;
        }
    }

    void array(Value& v, int depth) {
        v.type = Value::Type::Array;
        ++pos_;
        skip_space();
        if (peek() == ']') { ++pos_; return; }
        for (;;) {
            v.array.push_back(value(depth + 1));
            skip_space();
            if (peek() == ',') { ++pos_; continue; }
            expect(']');
            return;
        }
    }

    void number(Value& v) {
        size_t start = pos_;
        if (peek() == '-') ++pos_;
        auto digits = [&] {
            size_t s = pos_;
            while (peek() >= '0' && peek() <= '9') ++pos_;
            if (pos_ == s) fail("invalid number");
        };
        digits();
        if (peek() == '.') { ++pos_; digits(); }
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            if (peek() == '+' || peek() == '-') ++pos_;
            digits();
        }
        v.type = Value::Type::Number;
        v.string = std::string(text_.substr(start, pos_ - start));
        v.number = std::strtod(v.string.c_str(), nullptr);
    }

    uint32_t hex4() {
        if (pos_ + 4 > text_.size()) fail("truncated \\u escape");
        uint32_t cp = 0;
        for (int k = 0; k < 4; ++k) {
            char c = text_[pos_++];
            cp <<= 4;
            if (c >= '0' && c <= '9') cp |= c - '0';
            else if (c >= 'a' && c <= 'f') cp |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') cp |= c - 'A' + 10;
            else fail("invalid \\u escape");
        }
        return cp;
    }

    std::string string() {
        expect('"');
        std::string out;
        for (;;) {
            if (pos_ >= text_.size()) fail("unterminated string");
            char c = text_[pos_++];
            if (c == '"') break;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') { out += c; continue; }
            if (pos_ >= text_.size()) fail("unterminated string");
            char e = text_[pos_++];
            switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
                        size_t back = pos_;
                        pos_ += 2;
                        uint32_t low = hex4();
                        if (low >= 0xDC00 && low <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        else pos_ = back;
                    }
                    if (cp >= 0xD800 && cp <= 0xDFFF) fail("lone surrogate in \\u escape");  // as serde_json
                    unicode::append_utf8(out, cp);
                    break;
                }
                default: fail("invalid escape");
            }
        }
        if (unicode::valid_utf8_prefix(out) != out.size()) fail("string is not valid UTF-8");
        return out;
    }
};

}  // namespace

const Value* Value::find(std::string_view key) const {
    for (const auto& [k, v] : object)
        if (k == key) return &v;
    return nullptr;
}

Value parse(std::string_view text) { return Parser(text).document(); }

}  // namespace edgevlm::json
