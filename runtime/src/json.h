// A small JSON reader, enough for tokenizer.json: a DOM of null/bool/number/string/array/object.
// Internal to the runtime; malformed input throws std::invalid_argument with the byte offset.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgevlm::json {

struct Value {
    enum class Type { Null, Bool, Number, String, Array, Object };
    Type type = Type::Null;
    bool boolean = false;
    double number = 0;
    std::string string;                                // also the raw text of a number
    std::vector<Value> array;
    std::vector<std::pair<std::string, Value>> object;  // in file order

    bool is_null() const { return type == Type::Null; }
    bool is_string() const { return type == Type::String; }
    bool is_array() const { return type == Type::Array; }
    bool is_object() const { return type == Type::Object; }
    // The member `key` of an object, or nullptr (also when this is not an object).
    const Value* find(std::string_view key) const;
};

Value parse(std::string_view text);

}  // namespace edgevlm::json
