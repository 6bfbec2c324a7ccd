/* edgevlm's native runtime as a C API: what the Android (JNI) and iOS/macOS (Swift) shells call.
 * One pipeline per artifact folder (manifest.json + artifacts, checked by sha256 when opened);
 * image pixels come decoded from the platform (Bitmap, CGImage). Functions return an
 * edgevlm_status; on failure edgevlm_last_error() holds the message (with the fix) for this thread.
 * A pipeline is not thread-safe: call it from one thread at a time. */
#ifndef EDGEVLM_C_API_H
#define EDGEVLM_C_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    EDGEVLM_OK = 0,
    EDGEVLM_ERROR_ARGUMENT = 1,  /* a NULL pointer, a bad option value */
    EDGEVLM_ERROR_MANIFEST = 2,  /* unreadable or unknown manifest, missing or changed artifact */
    EDGEVLM_ERROR_IMAGE = 3,     /* not an RGB8/RGBA8 buffer, wrong size, slice too large */
    EDGEVLM_ERROR_PROMPT = 4,    /* the prompt is past the cache, or holds image tokens */
    EDGEVLM_ERROR_RUNTIME = 5    /* the vision encoder or decoder failed */
} edgevlm_status;

typedef enum {
    EDGEVLM_PIXELS_RGB8 = 0,  /* 3 bytes per pixel */
    EDGEVLM_PIXELS_RGBA8 = 1  /* 4 bytes per pixel; alpha is dropped (as Pillow's convert("RGB")) */
} edgevlm_pixel_format;

typedef struct {
    const uint8_t* pixels;
    int32_t width, height;
    int32_t row_bytes; /* bytes from one row to the next; 0: width * bytes per pixel */
    int32_t format;    /* an edgevlm_pixel_format */
} edgevlm_image;

typedef struct {
    const char* vision; /* "auto" (NULL too), "pte", or a vision artifact's file name */
    int32_t verify;     /* check every loaded file's sha256 against the manifest (1, the default) */
    int32_t threads;    /* ExecuTorch threadpool size; 0 keeps its default */
    int32_t mmap;       /* map the decoder program (1, the default: less resident memory, same speed); 0 reads it */
} edgevlm_open_options;

typedef struct {
    int32_t max_new_tokens; /* 32 */
    float temperature;      /* 0: greedy */
    float top_p;            /* 1 */
    uint64_t seed;
    int32_t ignore_stop;    /* benchmarks: always generate max_new_tokens */
} edgevlm_run_options;

/* Receives generated text as it comes (UTF-8, never a split character); not NUL-terminated. */
typedef void (*edgevlm_text_callback)(const char* utf8, size_t length, void* user_data);

typedef struct edgevlm_pipeline edgevlm_pipeline;

void edgevlm_open_options_default(edgevlm_open_options* options);
void edgevlm_run_options_default(edgevlm_run_options* options);

/* options may be NULL (defaults). On success *pipeline is set; close it with edgevlm_close. */
edgevlm_status edgevlm_open(const char* artifact_dir, const edgevlm_open_options* options, edgevlm_pipeline** pipeline);

/* Images (count may be 0) + prompt -> text through on_text (may be NULL). If result_json is not
 * NULL it receives the result as JSON (urn:edgevlm:runner-result:1: text, ids, stats); free it
 * with edgevlm_free_string. */
edgevlm_status edgevlm_run(edgevlm_pipeline* pipeline, const edgevlm_image* images, size_t image_count,
                           const char* prompt, const edgevlm_run_options* options, edgevlm_text_callback on_text,
                           void* user_data, char** result_json);

void edgevlm_free_string(char* text);
void edgevlm_close(edgevlm_pipeline* pipeline);

/* The message of this thread's last failed call ("" if none). Valid until the next call. */
const char* edgevlm_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEVLM_C_API_H */
