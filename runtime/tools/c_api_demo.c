/* edgevlm-c-api-demo: the C API from C, as the JNI and Swift shells use it (and a test that the
 * header is plain C).
 *   edgevlm-c-api-demo DIR PROMPT [PIXELS_FILE WIDTH HEIGHT rgb|rgba]
 * Streams the text to stdout, then prints the result JSON on its own line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgevlm/c_api.h"

static void print_piece(const char* utf8, size_t length, void* user_data) {
    (void)user_data;
    fwrite(utf8, 1, length, stdout);
    fflush(stdout);
}

static unsigned char* read_file(const char* path, long* size) {
    FILE* file = fopen(path, "rb");
    if (file == NULL) return NULL;
    fseek(file, 0, SEEK_END);
    *size = ftell(file);
    fseek(file, 0, SEEK_SET);
    unsigned char* bytes = malloc(*size > 0 ? (size_t)*size : 1);
    if (bytes != NULL && fread(bytes, 1, (size_t)*size, file) != (size_t)*size) {
        free(bytes);
        bytes = NULL;
    }
    fclose(file);
    return bytes;
}

int main(int argc, char** argv) {
    if (argc != 3 && argc != 7) {
        fprintf(stderr, "usage: %s DIR PROMPT [PIXELS_FILE WIDTH HEIGHT rgb|rgba|FORMAT_NUMBER]\n", argv[0]);
        return 2;
    }
    edgevlm_image image = {0};
    unsigned char* pixels = NULL;
    if (argc == 7) {
        long size = 0;
        pixels = read_file(argv[3], &size);
        if (pixels == NULL) {
            fprintf(stderr, "error: cannot read %s\n", argv[3]);
            return 2;
        }
        image.pixels = pixels;
        image.width = atoi(argv[4]);
        image.height = atoi(argv[5]);
        image.format = strcmp(argv[6], "rgb") == 0 ? EDGEVLM_PIXELS_RGB8
                       : strcmp(argv[6], "rgba") == 0 ? EDGEVLM_PIXELS_RGBA8 : atoi(argv[6]);
    }
    edgevlm_pipeline* pipeline = NULL;
    edgevlm_status status = edgevlm_open(argv[1], NULL, &pipeline);
    if (status != EDGEVLM_OK) {
        fprintf(stderr, "error %d: %s\n", (int)status, edgevlm_last_error());
        free(pixels);
        return 1;
    }
    edgevlm_run_options options;
    edgevlm_run_options_default(&options);
    options.max_new_tokens = 8;
    char* result = NULL;
    status = edgevlm_run(pipeline, &image, pixels ? 1 : 0, argv[2], &options, print_piece, NULL, &result);
    if (status == EDGEVLM_OK) printf("\n%s\n", result);
    else fprintf(stderr, "error %d: %s\n", (int)status, edgevlm_last_error());
    edgevlm_free_string(result);
    edgevlm_close(pipeline);
    free(pixels);
    return status == EDGEVLM_OK ? 0 : 1;
}
