// ExecuTorch's runtime logs at Info level (CPU probing, program loading) to stderr, in the middle of
// what the runner prints and what an app shows. Its platform layer lets a program take those
// messages: errors always pass, Info and Debug only with EDGEVLM_LOG=info or debug.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <executorch/runtime/platform/platform.h>

namespace {

int rank(et_pal_log_level_t level) {
    switch (level) {
        case kDebug: return 0;
        case kInfo: return 1;
        case kError: return 2;
        case kFatal: return 3;
        default: return 2;
    }
}

int threshold() {
    const char* setting = std::getenv("EDGEVLM_LOG");
    if (setting == nullptr) return rank(kError);
    if (std::strcmp(setting, "debug") == 0) return rank(kDebug);
    if (std::strcmp(setting, "info") == 0) return rank(kInfo);
    return rank(kError);
}

void emit(et_timestamp_t, et_pal_log_level_t level, const char* filename, const char*, size_t line,
          const char* message, size_t length) {
    static const int minimum = threshold();
    if (rank(level) < minimum) return;
    std::fprintf(stderr, "[executorch %c %s:%zu] %.*s\n", static_cast<char>(level), filename ? filename : "?", line,
                 static_cast<int>(length), message);
}

// registered when the engine loads, before any program or threadpool logs
const bool registered =
    executorch::runtime::register_pal(executorch::runtime::PalImpl::create(emit, __FILE__));

}  // namespace
