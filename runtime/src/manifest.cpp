// manifest.json -> Manifest. Python validates the whole schema when it writes and reads a manifest
// (export/manifest_schema.py); this reader checks the version and every field it uses, so a foreign
// or hand-edited file fails with the field's name rather than a crash.
#include "edgevlm/manifest.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "json.h"
#include "sha256.h"

namespace edgevlm {

namespace {

using json::Value;

struct Reader {
    std::string source;  // the manifest path, for messages

    [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
        throw ManifestError(source + ": " + field + " " + problem +
                            ": re-export the folder with `edgevlm export` (the manifest is written by it)");
    }
    const Value& member(const Value& object, const std::string& key, const std::string& where) const {
        const Value* value = object.find(key);
        if (value == nullptr) fail(where + "." + key, "is missing");
        return *value;
    }
    std::string text(const Value& object, const std::string& key, const std::string& where) const {
        const Value& value = member(object, key, where);
        if (!value.is_string()) fail(where + "." + key, "is not a string");
        return value.string;
    }
    int64_t integer(const Value& object, const std::string& key, const std::string& where) const {
        const Value& value = member(object, key, where);
        if (value.type != Value::Type::Number || value.number != static_cast<double>(static_cast<int64_t>(value.number)))
            fail(where + "." + key, "is not an integer");
        return static_cast<int64_t>(value.number);
    }
    bool boolean(const Value& object, const std::string& key, const std::string& where) const {
        const Value& value = member(object, key, where);
        if (value.type != Value::Type::Bool) fail(where + "." + key, "is not true/false");
        return value.boolean;
    }
    std::vector<double> numbers(const Value& object, const std::string& key, const std::string& where) const {
        const Value& value = member(object, key, where);
        if (!value.is_array()) fail(where + "." + key, "is not an array");
        std::vector<double> out;
        for (const Value& item : value.array) {
            if (item.type != Value::Type::Number) fail(where + "." + key, "holds a non-number");
            out.push_back(item.number);
        }
        return out;
    }
    ManifestFile file(const Value& object, const std::string& where) const {
        ManifestFile out{text(object, "file", where), text(object, "sha256", where), -1};
        if (object.find("bytes")) out.bytes = integer(object, "bytes", where);
        if (out.file.empty() || out.file[0] == '/' || out.file.find("..") != std::string::npos)
            fail(where + ".file", "`" + out.file + "` is not a path inside the artifact folder");
        return out;
    }
    std::vector<ManifestFile> files(const Value& object, const std::string& key, const std::string& where) const {
        std::vector<ManifestFile> out;
        const Value* list = object.find(key);
        if (list == nullptr) return out;
        if (!list->is_array()) fail(where + "." + key, "is not an array");
        for (size_t i = 0; i < list->array.size(); ++i)
            out.push_back(file(list->array[i], where + "." + key + "[" + std::to_string(i) + "]"));
        return out;
    }
};

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw ManifestError("cannot read " + path + ": point --artifacts at a folder written by `edgevlm export`");
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

void read_preprocessing(const Reader& r, const Value& pre, Manifest& m) {
    const Value& slice = r.member(pre, "slice_config", "preprocessing");
    m.slice.max_slice_nums = static_cast<int>(r.integer(slice, "max_slice_nums", "preprocessing.slice_config"));
    m.slice.scale_resolution = static_cast<int>(r.integer(slice, "scale_resolution", "preprocessing.slice_config"));
    m.slice.patch_size = static_cast<int>(r.integer(pre, "patch_size", "preprocessing"));
    m.slice.slice_mode = r.boolean(pre, "slice_mode", "preprocessing");
    m.num_patches_per_side = static_cast<int>(r.integer(pre, "num_patches_per_side", "preprocessing"));
    const auto mean = r.numbers(pre, "norm_mean", "preprocessing"), std = r.numbers(pre, "norm_std", "preprocessing");
    if (mean.size() != 3 || std.size() != 3) r.fail("preprocessing.norm_mean/norm_std", "must hold 3 values each");
    for (int c = 0; c < 3; ++c) m.norm.mean[c] = static_cast<float>(mean[c]), m.norm.std[c] = static_cast<float>(std[c]);
    const Value& pos = r.member(pre, "resampler_pos", "preprocessing");
    m.resampler.embed_dim = static_cast<int>(r.integer(pos, "embed_dim", "preprocessing.resampler_pos"));
    const std::string added_to = r.text(pos, "added_to", "preprocessing.resampler_pos");
    if (added_to != "keys" && added_to != "values")
        r.fail("preprocessing.resampler_pos.added_to", "is `" + added_to + "`, not keys or values");
    m.resampler.on_values = added_to == "values";
    if (pos.find("frequencies"))
        for (double f : r.numbers(pos, "frequencies", "preprocessing.resampler_pos"))
            m.resampler.frequencies.push_back(static_cast<float>(f));
}

void read_prompt(const Reader& r, const Value& root, Manifest& m) {
    const Value* assembly = r.member(root, "prompt", "manifest").find("assembly");
    if (assembly != nullptr) {
        const std::string where = "prompt.assembly";
        PromptAssembly a;
        a.prefix = r.text(*assembly, "prefix", where);
        a.suffix = r.text(*assembly, "suffix", where);
        a.line_separator = r.text(*assembly, "line_separator", where);
        a.unk_token = r.text(*assembly, "unk_token", where);
        const std::string content = r.text(*assembly, "content", where);
        if (content != "verbatim" && content != "trimmed") r.fail(where + ".content", "is `" + content + "`");
        a.trimmed = content == "trimmed";
        a.image_id = r.boolean(*assembly, "image_id", where);
        a.slice_mode = r.boolean(*assembly, "slice_mode", where);
        m.assembly = a;
    }
    const Value& special = r.member(root, "special_tokens", "manifest");
    for (const auto& [name, value] : special.object) {
        if (name == "stop") {
            for (const Value& id : value.array) m.stop_ids.push_back(static_cast<int64_t>(id.number));
        } else if (value.type == Value::Type::Number) {
            m.special_tokens[name] = static_cast<int64_t>(value.number);
        }
    }
}

void read_artifacts(const Reader& r, const Value& root, Manifest& m) {
    const Value& artifacts = r.member(root, "artifacts", "manifest");
    if (!artifacts.is_array()) r.fail("artifacts", "is not an array");
    for (size_t i = 0; i < artifacts.array.size(); ++i) {
        const Value& a = artifacts.array[i];
        const std::string where = "artifacts[" + std::to_string(i) + "]";
        const std::string part = r.text(a, "part", where);
        if (part == "vision") {
            VisionArtifact v{r.file(a, where), r.text(a, "target", where), r.text(a, "precision", where), "", "", {},
                             0, 1, r.files(a, "extra_files", where)};
            v.max_patches = static_cast<int>(r.integer(a, "max_patches", where));
            v.batch = static_cast<int>(r.integer(a, "batch", where));
            if (const Value* details = a.find("details")) {
                if (const Value* ep = details->find("execution_provider"); ep && ep->is_string())
                    v.execution_provider = ep->string;
                if (const Value* units = details->find("compute_units"); units && units->is_string())
                    v.compute_units = units->string;
                if (const Value* type = details->find("backend_type"); type && type->is_string())
                    v.provider_options.emplace_back("backend_type", type->string);
                if (const Value* given = details->find("provider_options"); given && given->is_object())
                    for (const auto& [key, value] : given->object)  // numbers keep their JSON text
                        v.provider_options.emplace_back(key, value.string);
            }
            m.vision.push_back(v);
        } else if (part == "decoder") {
            DecoderArtifact d{r.file(a, where), r.text(a, "target", where), r.text(a, "precision", where), 0, {},
                              r.files(a, "extra_files", where)};
            d.max_seq_len = r.integer(r.member(a, "kv_cache", where), "max_seq_len", where + ".kv_cache");
            if (const Value* methods = a.find("methods"))
                for (const Value& name : methods->array) d.methods.push_back(name.string);
            m.decoders.push_back(d);
        }
    }
}

}  // namespace

bool DecoderArtifact::has_method(const std::string& name) const {
    return std::find(methods.begin(), methods.end(), name) != methods.end();
}

Manifest Manifest::load(const std::string& artifact_dir) {
    Manifest m;
    m.root = artifact_dir;
    Reader r{artifact_dir + "/manifest.json"};
    Value root;
    try {
        root = json::parse(read_text(r.source));
    } catch (const std::invalid_argument& e) {
        throw ManifestError(r.source + " is not valid JSON (" + e.what() + "): re-export the folder");
    }
    if (!root.is_object()) r.fail("the document", "is not a JSON object");
    m.schema_version = static_cast<int>(r.integer(root, "schema_version", "manifest"));
    if (m.schema_version != kManifestSchemaVersion)
        throw ManifestError(r.source + " has schema_version " + std::to_string(m.schema_version) + "; this runtime reads " +
                            std::to_string(kManifestSchemaVersion) +
                            (m.schema_version < kManifestSchemaVersion
                                 ? ": re-export the folder with this edgevlm (`edgevlm export`)"
                                 : ": use the runtime built from the edgevlm release that wrote it"));
    m.model_version = r.text(r.member(root, "model", "manifest"), "version", "model");
    m.query_num = static_cast<int>(r.integer(root, "query_num", "manifest"));
    const Value& llm = r.member(root, "llm", "manifest");
    m.hidden_size = r.integer(llm, "hidden_size", "llm");
    m.vocab_size = r.integer(llm, "vocab_size", "llm");
    read_preprocessing(r, r.member(root, "preprocessing", "manifest"), m);
    read_prompt(r, root, m);
    read_artifacts(r, root, m);
    m.files = r.files(root, "files", "manifest");
    return m;
}

const ManifestFile* Manifest::support_file(const std::string& relative) const {
    for (const ManifestFile& f : files)
        if (f.file == relative) return &f;
    return nullptr;
}

int64_t Manifest::special_token(const std::string& text) const {
    const auto it = special_tokens.find(text);
    if (it == special_tokens.end())
        throw ManifestError(root + "/manifest.json: special_tokens has no id for " + text + ": re-export the folder");
    return it->second;
}

void verify_files(const Manifest& manifest, const std::vector<ManifestFile>& files) {
    for (const ManifestFile& f : files) {
        const std::string path = manifest.path(f);
        struct stat info {};
        if (::stat(path.c_str(), &info) != 0)
            throw ManifestError(path + " is missing: the artifact folder is incomplete; copy the whole folder "
                                "`edgevlm export` wrote");
        int64_t bytes = 0;
        const std::string digest = sha256_path(path, &bytes);  // a file, or a folder such as an .mlpackage
        if (f.bytes >= 0 && bytes != f.bytes)
            throw ManifestError(path + " is " + std::to_string(bytes) + " bytes, the manifest says " +
                                std::to_string(f.bytes) + ": the file changed after export; copy it again or re-export");
        if (digest != f.sha256)
            throw ManifestError(path + " has sha256 " + digest + ", the manifest says " + f.sha256 +
                                ": the file changed after export; copy it again or re-export");
    }
}

}  // namespace edgevlm
