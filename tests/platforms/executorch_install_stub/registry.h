// The stand-in's registry: which libraries' static initialisers ran.
#pragma once
namespace stub {
bool add(const char* name);
bool has(const char* name);
}  // namespace stub
