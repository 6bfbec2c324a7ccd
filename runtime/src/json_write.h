// A small JSON writer for the runtime's stats and results (strings escaped, numbers as C++ prints
// them, keys in call order). Internal to the runtime.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edgevlm::json {

std::string quote(const std::string& text);  // a JSON string literal of UTF-8 text

class Writer {
public:
    Writer& begin_object();
    Writer& end_object();
    Writer& key(const std::string& name);
    Writer& value(const std::string& text);
    Writer& value(double number);
    Writer& value(int64_t number);
    Writer& raw(const std::string& json);  // an already serialised value
    Writer& numbers(const std::vector<double>& values);
    Writer& integers(const std::vector<int64_t>& values);
    template <typename T>
    Writer& field(const std::string& name, const T& v) {
        return key(name).value(v);
    }
    Writer& field(const std::string& name, const char* text) { return key(name).value(std::string(text)); }
    Writer& field(const std::string& name, int v) { return key(name).value(static_cast<int64_t>(v)); }
    const std::string& str() const { return out_; }

private:
    void separate();
    std::string out_;
    bool first_ = true;
};

}  // namespace edgevlm::json
