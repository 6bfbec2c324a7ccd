#include "json_write.h"

#include <cmath>
#include <cstdio>

namespace edgevlm::json {

std::string quote(const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
        else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c == '\r') out += "\\r";
        else if (c < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else out += static_cast<char>(c);
    }
    return out + "\"";
}

void Writer::separate() {
    if (!first_) out_ += ", ";
    first_ = false;
}

Writer& Writer::begin_object() {
    out_ += "{";
    first_ = true;
    return *this;
}

Writer& Writer::end_object() {
    out_ += "}";
    first_ = false;
    return *this;
}

Writer& Writer::key(const std::string& name) {
    separate();
    out_ += quote(name) + ": ";
    first_ = true;  // the value follows without a comma
    return *this;
}

Writer& Writer::value(const std::string& text) {
    out_ += quote(text);
    first_ = false;
    return *this;
}

Writer& Writer::value(double number) {
    char text[32];
    std::snprintf(text, sizeof text, "%.10g", std::isfinite(number) ? number : 0.0);  // JSON has no inf/nan
    out_ += text;
    first_ = false;
    return *this;
}

Writer& Writer::value(int64_t number) {
    out_ += std::to_string(number);
    first_ = false;
    return *this;
}

Writer& Writer::raw(const std::string& json) {
    out_ += json;
    first_ = false;
    return *this;
}

Writer& Writer::numbers(const std::vector<double>& values) {
    out_ += "[";
    for (size_t i = 0; i < values.size(); ++i) {
        if (i) out_ += ", ";
        first_ = true;
        value(values[i]);
    }
    out_ += "]";
    first_ = false;
    return *this;
}

Writer& Writer::integers(const std::vector<int64_t>& values) {
    out_ += "[";
    for (size_t i = 0; i < values.size(); ++i) out_ += (i ? ", " : "") + std::to_string(values[i]);
    out_ += "]";
    first_ = false;
    return *this;
}

}  // namespace edgevlm::json
