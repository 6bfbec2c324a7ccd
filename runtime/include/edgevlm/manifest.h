// What the native runtime reads of an export's manifest.json (schema version 2,
// export/schemas/manifest.schema.json): preprocessing, prompt assembly, special tokens and the
// artifacts, plus the sha256 checks that run before any artifact is loaded.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgevlm/preprocess.h"
#include "edgevlm/vision.h"

namespace edgevlm {

// A manifest that cannot be used: unreadable, unknown schema version, missing fields, a file whose
// bytes changed. The message names the file and the fix.
struct ManifestError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline constexpr int kManifestSchemaVersion = 2;

struct ManifestFile {
    std::string file;  // relative to the artifact folder
    std::string sha256;
    int64_t bytes = -1;
};

struct VisionArtifact {
    ManifestFile main;
    std::string target, precision;
    std::string execution_provider, compute_units;  // details: the intended ORT EP / Core ML compute units
    ProviderOptions provider_options;               // details: backend_type + provider_options (QNN EP)
    int max_patches = 0, batch = 1;
    std::vector<ManifestFile> extra_files;  // e.g. a QNN context binary beside its EPContext model
};

struct DecoderArtifact {
    ManifestFile main;
    std::string target, precision;
    int64_t max_seq_len = 0;
    std::vector<std::string> methods;  // .pte methods; `vision_encoder` when it carries the encoder
    std::vector<ManifestFile> extra_files;
    bool has_method(const std::string& name) const;
};

// How to build the prompt without the chat template (manifest prompt.assembly).
struct PromptAssembly {
    std::string prefix, suffix, line_separator = "\n", unk_token = "<unk>";
    bool trimmed = false;  // the template applies Python's str.strip() to the user turn
    bool image_id = false, slice_mode = true;
};

struct Manifest {
    std::string root;  // the artifact folder
    int schema_version = 0;
    std::string model_version;  // 2.5 | 2.6 | 4.0 | 4.5
    int query_num = 0;
    int64_t hidden_size = 0, vocab_size = 0;

    SliceConfig slice;
    Normalization norm;
    int num_patches_per_side = 70;
    ResamplerPositions resampler;

    std::optional<PromptAssembly> assembly;
    std::map<std::string, int64_t> special_tokens;  // <image>, </image>, <slice>, ..., unk text -> id
    std::vector<int64_t> stop_ids;

    std::vector<VisionArtifact> vision;
    std::vector<DecoderArtifact> decoders;
    std::vector<ManifestFile> files;  // support files: tokenizer, verification set

    static Manifest load(const std::string& artifact_dir);

    std::string path(const ManifestFile& file) const { return root + "/" + file.file; }
    const ManifestFile* support_file(const std::string& relative) const;
    int64_t special_token(const std::string& text) const;  // throws ManifestError when absent
};

// Checks each file's sha256 (and size) against the manifest; throws ManifestError naming the first
// missing or changed file.
void verify_files(const Manifest& manifest, const std::vector<ManifestFile>& files);

}  // namespace edgevlm
