// The vision half of the native runtime: one slice at a time through a static-shape vision encoder
// (SigLIP + resampler, export/vision.py StaticVisionEncoder), whichever runtime holds it. The host
// inputs are built exactly as export/vision.py vision_inputs builds them in Python.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "edgevlm/decoder.h"     // Embeddings
#include "edgevlm/preprocess.h"  // PatchRow

namespace edgevlm {

struct VisionError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// What the host needs of the resampler to build its positional input (manifest preprocessing block).
struct ResamplerPositions {
    int embed_dim = 0;
    bool on_values = false;  // 4.5 ("3D" resampler): 2D positions go on the values, not the keys
    // The exporter's float32 frequencies (embed_dim / 4 of them), which pin the table to the export
    // host's numpy; empty: computed here (libm powf).
    std::vector<float> frequencies;
};

// The encoder's four inputs for `batch` rows (the first holds the slice, the rest are padding
// rows with one unmasked patch, as vision_inputs pads a batch), in the exported dtypes.
struct VisionBatch {
    int batch = 1, max_patches = 0, patch_size = 14, embed_dim = 0;
    std::vector<float> pixel_values;    // [batch, 3, patch, max_patches * patch]
    std::vector<float> patch_mask;      // [batch, max_patches], 1 for real patches
    std::vector<int32_t> position_ids;  // [batch, max_patches], 0 on padding
    std::vector<float> resampler_pos;   // [batch, max_patches, embed_dim]
};

// Throws VisionError for a slice larger than max_patches (export/vision.py SlicesTooLarge) or a
// PatchRow whose values do not hold its patches_h x patches_w patches.
VisionBatch vision_batch(const PatchRow& slice, int max_patches, int batch, int num_patches_per_side,
                         const ResamplerPositions& resampler, int patch_size = 14);

// The float32 sincos table of model/resampler.py (sincos_2d over sincos_1d), [h*w, embed_dim]
// row-major, bit for bit as numpy computes it with FMA SIMD sin/cos and libm powf (every host but
// one with AVX-512, where numpy's SVML power moves some frequencies by an ulp; see the .cpp).
std::vector<float> sincos_2d(int embed_dim, int h, int w, const std::vector<float>& frequencies = {});

// Throws VisionError naming `encoder` unless `inputs` has the shapes the encoder was exported for.
void check_vision_batch(const VisionBatch& inputs, int batch, int max_patches, int embed_dim,
                        const std::string& encoder);

class VisionEncoder {
public:
    virtual ~VisionEncoder() = default;
    virtual int max_patches() const = 0;
    virtual int batch() const = 0;
    // [query_num, llm_width] for the slice in row 0 of `inputs`.
    virtual Embeddings encode(const VisionBatch& inputs) = 0;
    virtual std::string describe() const = 0;  // e.g. "executorch vision_encoder (model.pte)"
};

// The `vision_encoder` method of an ExecuTorch program (a decoder .pte exported with vision_in_pte);
// batch and max_patches from the method's metadata. pte_has_vision throws only when the file does
// not load as a program.
std::unique_ptr<VisionEncoder> open_pte_vision(const std::string& pte_path);
bool pte_has_vision(const std::string& pte_path);

// An ONNX vision artifact through ONNX Runtime's C API (CPU EP; the EP named in provider when the
// runtime carries it: "XNNPACK", "QNN", ... or the manifest's XnnpackExecutionProvider-style
// names). threads: intra-op threads, 0 for ONNX Runtime's default. Built only with
// EDGEVLM_WITH_ORT; otherwise it throws, saying so. provider_options go to the EP as given (the
// QNN EP: backend_type, htp_arch, soc_model, ... from the manifest's details.provider_options).
using ProviderOptions = std::vector<std::pair<std::string, std::string>>;
std::unique_ptr<VisionEncoder> open_ort_vision(const std::string& onnx_path, const std::string& provider = "cpu",
                                               int threads = 0, const ProviderOptions& provider_options = {});
bool ort_available();

// Whether this runtime was built with Core ML (EDGEVLM_WITH_COREML, Apple only).
constexpr bool coreml_available() {
#ifdef EDGEVLM_WITH_COREML
    return true;
#else
    return false;
#endif
}

#ifdef EDGEVLM_WITH_COREML
// A Core ML vision artifact (backends/coreml.py): an .mlpackage, compiled on first use and cached as
// .mlmodelc under the user's Caches folder, or an .mlmodelc as it is. compute_units: "cpu-and-ne"
// (the ios-m4 recipe's), "all", "cpu-only" or "cpu-and-gpu" (the manifest's CPU_AND_NE spelling
// too). Apple platforms only (src/vision_coreml.mm).
std::unique_ptr<VisionEncoder> open_coreml_vision(const std::string& path, const std::string& compute_units = "cpu-and-ne");
#endif

}  // namespace edgevlm
