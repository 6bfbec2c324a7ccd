// Built through runtime/cmake/executorch_package.cmake's executorch_prebuilt target by
// tests/test_runtime_platforms.py: uses extension/module, and exits 0 only if the registration-only
// libraries (XNNPACK backend, optimized and quantized kernels) were kept on the link line and
// registered themselves. argv[1]: a .pte to load (optional).
#include <cstdio>
#include <string>
#include <executorch/extension/module/module.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/kernel/operator_registry.h>
int main(int argc, char** argv) {
    executorch::extension::Module module(argc > 1 ? argv[1] : "/nonexistent.pte");
    const bool loaded = module.load() == executorch::runtime::Error::Ok;
    const bool xnnpack = executorch::runtime::get_backend_class("XnnpackBackend") != nullptr;
    bool quantized = false, optimized = false;
    for (const auto& k : executorch::runtime::get_registered_kernels()) {
        const std::string name = k.name_;
        quantized |= name.rfind("quantized_decomposed::", 0) == 0;
        optimized |= name == "aten::mm.out";
    }
    std::printf("loaded=%d xnnpack=%d quantized=%d optimized=%d kernels=%zu\n", loaded, xnnpack, quantized, optimized,
                executorch::runtime::get_registered_kernels().size());
    return xnnpack && quantized && optimized ? 0 : 1;
}
