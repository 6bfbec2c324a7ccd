// Built through runtime/cmake/executorch_package.cmake against the stand-in install
// (executorch_install_stub/): exits 0 only if every registration library's initialiser ran.
#include <cstdio>
#include <initializer_list>

#include "stub/registry.h"

int main() {
    int missing = 0;
    for (const char* name : {"executorch", "xnnpack_backend", "optimized_native_cpu_ops_lib", "quantized_ops_lib"}) {
        if (!stub::has(name)) {
            std::printf("not registered: %s\n", name);
            ++missing;
        }
    }
    std::printf("%d missing\n", missing);
    return missing == 0 ? 0 : 1;
}
