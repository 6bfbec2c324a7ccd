// The C API over Pipeline: exceptions become status codes + a per-thread message.
#include "edgevlm/c_api.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "edgevlm/pipeline.h"
#include "edgevlm/prompt.h"

struct edgevlm_pipeline {
    std::unique_ptr<edgevlm::Pipeline> pipeline;
};

namespace {

thread_local std::string last_error;

edgevlm_status fail(edgevlm_status status, const std::string& message) {
    last_error = message;
    return status;
}

// Runs `body`, mapping what the core throws to a status.
template <typename Body>
edgevlm_status guarded(Body&& body) {
    last_error.clear();
    try {
        body();
        return EDGEVLM_OK;
    } catch (const edgevlm::ManifestError& e) {
        return fail(EDGEVLM_ERROR_MANIFEST, e.what());
    } catch (const edgevlm::PreprocessError& e) {
        return fail(EDGEVLM_ERROR_IMAGE, e.what());
    } catch (const edgevlm::PromptError& e) {
        return fail(EDGEVLM_ERROR_PROMPT, e.what());
    } catch (const std::exception& e) {
        return fail(EDGEVLM_ERROR_RUNTIME, e.what());
    }
}

edgevlm::RgbImage to_rgb(const edgevlm_image& image, size_t index) {
    const std::string which = "image " + std::to_string(index);
    if (image.format != EDGEVLM_PIXELS_RGB8 && image.format != EDGEVLM_PIXELS_RGBA8)
        throw edgevlm::PreprocessError(which + " has pixel format " + std::to_string(image.format) +
                                       ": pass EDGEVLM_PIXELS_RGB8 or EDGEVLM_PIXELS_RGBA8 (convert BGRA, grayscale or "
                                       "float images to RGB first)");
    if (image.pixels == nullptr || image.width <= 0 || image.height <= 0)
        throw edgevlm::PreprocessError(which + " is empty (" + std::to_string(image.width) + "x" +
                                       std::to_string(image.height) + "): pass decoded pixels with both sides >= 1");
    const int channels = image.format == EDGEVLM_PIXELS_RGB8 ? 3 : 4;
    const int64_t row_bytes = image.row_bytes ? image.row_bytes : static_cast<int64_t>(image.width) * channels;
    if (row_bytes < static_cast<int64_t>(image.width) * channels)
        throw edgevlm::PreprocessError(which + " has row_bytes " + std::to_string(row_bytes) + ", less than width x " +
                                       std::to_string(channels) + " bytes per pixel");
    edgevlm::RgbImage rgb(image.width, image.height);
    for (int y = 0; y < image.height; ++y) {
        const uint8_t* source = image.pixels + y * row_bytes;
        uint8_t* target = rgb.row(y);
        for (int x = 0; x < image.width; ++x)
            std::memcpy(target + 3 * x, source + channels * x, 3);
    }
    return rgb;
}

char* copy_string(const std::string& text) {
    char* out = static_cast<char*>(std::malloc(text.size() + 1));
    if (out != nullptr) std::memcpy(out, text.c_str(), text.size() + 1);
    return out;
}

}  // namespace

extern "C" {

void edgevlm_open_options_default(edgevlm_open_options* options) {
    if (options != nullptr) *options = {nullptr, 1, 0, 1};
}

void edgevlm_run_options_default(edgevlm_run_options* options) {
    if (options != nullptr) *options = {32, 0.0f, 1.0f, 0, 0};
}

edgevlm_status edgevlm_open(const char* artifact_dir, const edgevlm_open_options* options, edgevlm_pipeline** pipeline) {
    if (artifact_dir == nullptr || pipeline == nullptr)
        return fail(EDGEVLM_ERROR_ARGUMENT, "edgevlm_open needs an artifact folder and a place for the pipeline");
    *pipeline = nullptr;
    edgevlm_open_options given;
    edgevlm_open_options_default(&given);
    if (options != nullptr) given = *options;
    if (given.threads < 0) return fail(EDGEVLM_ERROR_ARGUMENT, "threads must be 0 (default) or more");
    return guarded([&] {
        edgevlm::PipelineOptions o;
        o.vision = given.vision ? given.vision : "auto";
        o.verify = given.verify != 0;
        o.threads = static_cast<size_t>(given.threads);
        o.mmap = given.mmap != 0;
        auto handle = std::make_unique<edgevlm_pipeline>();
        handle->pipeline = std::make_unique<edgevlm::Pipeline>(artifact_dir, o);
        *pipeline = handle.release();
    });
}

edgevlm_status edgevlm_run(edgevlm_pipeline* pipeline, const edgevlm_image* images, size_t image_count,
                           const char* prompt, const edgevlm_run_options* options, edgevlm_text_callback on_text,
                           void* user_data, char** result_json) {
    if (pipeline == nullptr || prompt == nullptr || (image_count > 0 && images == nullptr))
        return fail(EDGEVLM_ERROR_ARGUMENT, "edgevlm_run needs a pipeline, a prompt, and the images it counts");
    if (result_json != nullptr) *result_json = nullptr;
    edgevlm_run_options given;
    edgevlm_run_options_default(&given);
    if (options != nullptr) given = *options;
    if (given.max_new_tokens < 1 || given.temperature < 0 || given.top_p <= 0 || given.top_p > 1)
        return fail(EDGEVLM_ERROR_ARGUMENT, "run options: max_new_tokens >= 1, temperature >= 0, 0 < top_p <= 1");
    return guarded([&] {
        std::vector<edgevlm::RgbImage> rgb;
        for (size_t i = 0; i < image_count; ++i) rgb.push_back(to_rgb(images[i], i));
        edgevlm::RunOptions o;
        o.max_new_tokens = given.max_new_tokens;
        o.sampling = {given.temperature, given.top_p, given.seed};
        o.ignore_stop = given.ignore_stop != 0;
        const auto result = pipeline->pipeline->run(rgb, prompt, o, [&](const std::string& piece) {
            if (on_text != nullptr) on_text(piece.data(), piece.size(), user_data);
        });
        if (result_json != nullptr) *result_json = copy_string(result.to_json());
    });
}

void edgevlm_free_string(char* text) { std::free(text); }

void edgevlm_close(edgevlm_pipeline* pipeline) { delete pipeline; }

const char* edgevlm_last_error(void) { return last_error.c_str(); }

}  // extern "C"
