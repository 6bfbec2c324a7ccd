#include "registry.h"

#include <set>
#include <string>

namespace stub {
namespace {
std::set<std::string>& names() {
    static std::set<std::string> all;
    return all;
}
}  // namespace
bool add(const char* name) { return names().insert(name).second; }
bool has(const char* name) { return names().count(name) > 0; }
}  // namespace stub
