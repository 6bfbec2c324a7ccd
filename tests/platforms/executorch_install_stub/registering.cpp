// Registers STUB_NAME before main; nothing references this file, as with ExecuTorch's kernels.
#include "registry.h"

#define STUB_TEXT(x) #x
#define STUB_STRING(x) STUB_TEXT(x)
#define STUB_CONCAT(a, b) a##b
#define STUB_MARKER(x) STUB_CONCAT(stub_marker_, x)

int STUB_MARKER(STUB_NAME) = 1;  // a global: linking this archive whole twice defines it twice
namespace {
const bool registered = stub::add(STUB_STRING(STUB_NAME));
}
