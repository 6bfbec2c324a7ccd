// A stand-in for libedgevlm's C API (runtime/include/edgevlm/c_api.h), for testing the JNI bridge
// (runtime/platforms/android/edgevlm_jni.cpp) on the host JVM without ExecuTorch or a model: it
// reports what it was given (folder, options, pixels, prompt) in the result JSON and streams the
// prompt back, so the test can check every conversion the bridge makes. Test-only.
#include "edgevlm/c_api.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

struct edgevlm_pipeline {
    std::string dir, vision;
    int verify, threads;
};

namespace {
thread_local std::string last_error;

edgevlm_status fail(edgevlm_status status, const char* message) {
    last_error = message;
    return status;
}
}  // namespace

extern "C" {

void edgevlm_open_options_default(edgevlm_open_options* o) { *o = {nullptr, 1, 0}; }
void edgevlm_run_options_default(edgevlm_run_options* o) { *o = {32, 0.0f, 1.0f, 0, 0}; }

edgevlm_status edgevlm_open(const char* dir, const edgevlm_open_options* o, edgevlm_pipeline** out) {
    if (std::strcmp(dir, "missing") == 0)
        return fail(EDGEVLM_ERROR_MANIFEST, "missing/manifest.json does not exist: export the folder first");
    *out = new edgevlm_pipeline{dir, o->vision ? o->vision : "(null)", o->verify, o->threads};
    return EDGEVLM_OK;
}

edgevlm_status edgevlm_run(edgevlm_pipeline* p, const edgevlm_image* images, size_t count, const char* prompt,
                           const edgevlm_run_options* o, edgevlm_text_callback on_text, void* user, char** json) {
    if (std::strcmp(prompt, "fail") == 0) return fail(EDGEVLM_ERROR_PROMPT, "the prompt is past the cache");
    std::string hex;
    char byte[3];
    for (size_t i = 0; i < count; ++i) {
        const int channels = images[i].format == EDGEVLM_PIXELS_RGBA8 ? 4 : 3;
        for (int k = 0; k < images[i].width * images[i].height * channels; ++k) {
            std::snprintf(byte, sizeof byte, "%02x", images[i].pixels[k]);
            hex += byte;
        }
    }
    if (on_text) {
        on_text(prompt, std::strlen(prompt), user);
        on_text("|\xF0\x9F\x99\x82\xC3\xA9", 7, user);  // "|🙂é": a supplementary character and a 2-byte one
    }
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, "\"images\":%zu,\"size\":\"%dx%d\",\"format\":%d,\"max_new_tokens\":%d,"
                  "\"temperature\":%g,\"top_p\":%g,\"seed\":%llu", count, count ? images[0].width : 0,
                  count ? images[0].height : 0, count ? images[0].format : -1, o->max_new_tokens, o->temperature,
                  o->top_p, static_cast<unsigned long long>(o->seed));
    const std::string text = "{\"dir\":\"" + p->dir + "\",\"vision\":\"" + p->vision + "\",\"verify\":" +
                             std::to_string(p->verify) + ",\"threads\":" + std::to_string(p->threads) + "," +
                             numbers + ",\"pixels\":\"" + hex + "\",\"prompt\":\"" + prompt + "\"}";
    *json = static_cast<char*>(std::malloc(text.size() + 1));
    std::memcpy(*json, text.c_str(), text.size() + 1);
    return EDGEVLM_OK;
}

void edgevlm_free_string(char* text) { std::free(text); }
void edgevlm_close(edgevlm_pipeline* p) { delete p; }
const char* edgevlm_last_error(void) { return last_error.c_str(); }

}  // extern "C"
