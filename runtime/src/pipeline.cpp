#include "edgevlm/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "edgevlm/prompt.h"
#include "json_write.h"

namespace edgevlm {

namespace {

using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point start) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

// Most faithful first, as export/run.py VISION_PREFERENCE.
const std::vector<std::string> kVisionPreference = {"fp32", "fp16", "int8", "w8a16", "w4a16"};

size_t preference(const VisionArtifact& a) {
    const auto it = std::find(kVisionPreference.begin(), kVisionPreference.end(), a.precision);
    return static_cast<size_t>(it - kVisionPreference.begin());
}

// The ONNX Runtime execution provider an artifact is meant for, or "" when ORT cannot run it.
std::string ort_provider(const VisionArtifact& a) {
    if (a.target == "qnn") return "QNN";
    if (a.target != "ort") return "";
    if (a.execution_provider.empty() || a.execution_provider == "CPUExecutionProvider") return "cpu";
    return a.execution_provider;
}

// Whether this build can run the artifact: ONNX ones on ORT's CPU EP, or Core ML packages on Apple builds.
// (QNN EPContext models and other EPs run only when named with --vision: the device decides.)
bool runs_here(const VisionArtifact& a) {
    if (a.target == "coreml") return coreml_available();
    return ort_available() && ort_provider(a) == "cpu";
}

// Why `auto` does not open an artifact on this build, with the way to use it.
std::string why_not_here(const VisionArtifact& a) {
    const std::string& file = a.main.file;
    if (a.target == "coreml") return file + " needs Core ML (an Apple build: runtime/platforms/apple)";
    if (!ort_available()) return file + " needs ONNX Runtime, which this runtime was built without";
    if (a.target == "qnn")
        return file + " is a QNN EPContext model for the phone's HTP (name it with --vision " + file +
               " where ONNX Runtime has the QNN execution provider)";
    return file + " is meant for " + a.execution_provider + " (name it with --vision " + file + " where it exists)";
}

std::unique_ptr<VisionEncoder> open_vision(const Manifest& m, const VisionArtifact& a) {
    if (a.target == "coreml") {
#ifdef EDGEVLM_WITH_COREML
        return open_coreml_vision(m.path(a.main), a.compute_units.empty() ? "cpu-and-ne" : a.compute_units);
#else
        throw VisionError(a.main.file + " is a Core ML package: this runtime was built without Core ML (Apple "
                          "builds: -DEDGEVLM_WITH_COREML=ON, runtime/platforms/apple)");
#endif
    }
    return open_ort_vision(m.path(a.main), ort_provider(a), 0, a.provider_options);
}

const DecoderArtifact& pick_decoder(const Manifest& m) {
    for (const DecoderArtifact& d : m.decoders)
        if (d.target == "executorch") return d;
    throw ManifestError(m.root + " has no ExecuTorch decoder (.pte): the native runtime runs `backend: executorch` "
                        "decoders; export one with `edgevlm export --recipe ios-m4` (or android-sd8g3)");
}

// Which vision encoder a pipeline opens for `choice` (auto | pte | a vision artifact's file name),
// as export/run.py ArtifactRunner._pick_vision chooses.
struct VisionChoice {
    const VisionArtifact* artifact = nullptr;  // a vision artifact of its own (ONNX or Core ML)
    bool use_pte = false;                      // the decoder .pte's vision_encoder method
};

VisionChoice choose_vision(const Manifest& m, const DecoderArtifact& decoder, const std::string& choice) {
    VisionChoice out;
    if (choice == "pte") {
        if (!decoder.has_method("vision_encoder"))
            throw VisionError(decoder.main.file + " has no vision_encoder method: export it with the recipe's decoder "
                              "`vision_in_pte: true`, or pick a vision artifact with --vision FILE");
        out.use_pte = true;
    } else if (choice == "auto") {
        std::vector<const VisionArtifact*> runnable;
        for (const VisionArtifact& a : m.vision)
            if (runs_here(a)) runnable.push_back(&a);
        std::stable_sort(runnable.begin(), runnable.end(),
                         [](const VisionArtifact* a, const VisionArtifact* b) { return preference(*a) < preference(*b); });
        if (!runnable.empty()) out.artifact = runnable.front();
        else out.use_pte = decoder.has_method("vision_encoder");
    } else {
        for (const VisionArtifact& a : m.vision)
            if (a.main.file == choice) out.artifact = &a;
        if (out.artifact == nullptr)
            throw VisionError("--vision " + choice + " is not a vision artifact of " + m.root +
                              " (give a file name from its manifest, `pte` or `auto`)");
        if (ort_provider(*out.artifact).empty() && out.artifact->target != "coreml")
            throw VisionError(out.artifact->main.file + " is a " + out.artifact->target + " artifact, which this "
                              "runtime cannot run (it runs ONNX artifacts through ONNX Runtime, Core ML packages on "
                              "Apple builds, and the .pte's vision_encoder)");
    }
    return out;
}

}  // namespace

std::string RunStats::to_json() const {
    json::Writer w;
    w.begin_object();
    w.field("model_load_ms", model_load_ms).field("preprocess_ms", preprocess_ms);
    w.field("vision_ms", vision_ms).field("vision_slices", static_cast<int64_t>(vision_slice_ms.size()));
    w.key("vision_slice_ms").numbers(vision_slice_ms);
    w.field("vision_runtime", vision_runtime).field("token_encode_ms", token_encode_ms);
    w.field("prompt_tokens", prompt_tokens).field("generated_tokens", generated_tokens);
    w.field("prefill_ms", prefill_ms).field("prefill_tokens_per_s", prefill_ms > 0 ? prompt_tokens * 1000.0 / prefill_ms : 0.0);
    w.field("time_to_first_token_ms", time_to_first_token_ms);
    w.field("decode_ms", decode_ms).field("decode_steps", decode_steps);
    w.field("decode_tokens_per_s", decode_ms > 0 ? decode_steps * 1000.0 / decode_ms : 0.0);
    w.field("stopped_by", stopped_by);
    w.end_object();
    return w.str();
}

std::string RunResult::to_json(int64_t peak_rss_bytes) const {
    json::Writer w;
    w.begin_object().field("schema", "urn:edgevlm:runner-result:1").field("text", text);
    w.key("tokens").integers(tokens).key("prompt_ids").integers(prompt_ids);
    w.field("stopped_by", stats.stopped_by).key("stats").raw(stats.to_json());
    if (peak_rss_bytes >= 0) w.field("peak_rss_bytes", peak_rss_bytes);
    return w.end_object().str();
}

Pipeline::Pipeline(const std::string& artifact_dir, const PipelineOptions& options) {
    const auto start = clock_type::now();
    set_threads(options.threads);
    manifest_ = Manifest::load(artifact_dir);
    if (!manifest_.assembly)
        throw ManifestError(artifact_dir + "/manifest.json has no prompt.assembly (written by an older edgevlm, or a chat "
                            "template that rewrites the user turn): re-export the folder with this edgevlm");
    const DecoderArtifact& decoder = pick_decoder(manifest_);
    const ManifestFile* tokenizer = manifest_.support_file("tokenizer/tokenizer.json");
    if (tokenizer == nullptr) throw ManifestError(artifact_dir + "/manifest.json lists no tokenizer/tokenizer.json: re-export");

    std::vector<ManifestFile> to_check{decoder.main, *tokenizer};
    const VisionChoice vision = choose_vision(manifest_, decoder, options.vision);
    const VisionArtifact* artifact = vision.artifact;
    const bool use_pte = vision.use_pte;
    if (artifact != nullptr) {
        to_check.push_back(artifact->main);
        to_check.insert(to_check.end(), artifact->extra_files.begin(), artifact->extra_files.end());
    }
    if (options.verify) verify_files(manifest_, to_check);

    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(manifest_.path(*tokenizer)));
    auto part = clock_type::now();
    decoder_ = std::make_unique<PteDecoder>(manifest_.path(decoder.main), options.mmap);
    decoder_load_ms_ = ms_since(part);
    part = clock_type::now();
    if (artifact != nullptr) vision_ = open_vision(manifest_, *artifact);
    else if (use_pte) vision_ = open_pte_vision(manifest_.path(decoder.main));
    if (vision_) vision_load_ms_ = ms_since(part);
    else if (manifest_.vision.empty() && !decoder.has_method("vision_encoder"))
        vision_unavailable_ = "the folder has no vision encoder (exported with --part decoder?)";
    else {
        for (const VisionArtifact& a : manifest_.vision) vision_unavailable_ += why_not_here(a) + "; ";
        vision_unavailable_ += "and " + decoder.main.file + " has no vision_encoder method";
    }
    model_load_ms_ = ms_since(start);
}

Pipeline::~Pipeline() = default;

std::string Pipeline::vision_description() const { return vision_ ? vision_->describe() : "none"; }

std::vector<Embeddings> Pipeline::encode_images(const std::vector<RgbImage>& images,
                                                std::vector<std::optional<Size>>& grids, RunStats& stats) {
    std::vector<Embeddings> out;
    if (images.empty()) return out;
    if (!vision_)
        throw VisionError("cannot encode images with " + manifest_.root + ": " + vision_unavailable_ +
                          ". Export a vision artifact beside the decoder (e.g. the ort recipe's vision part) or the "
                          "decoder with `vision_in_pte: true`");
    auto start = clock_type::now();
    std::vector<SlicedImage> sliced;
    for (const RgbImage& image : images) {
        sliced.push_back(image_slices(image, manifest_.slice, manifest_.norm));
        grids.push_back(manifest_.slice.slice_mode ? sliced.back().layout.grid : std::nullopt);
    }
    stats.preprocess_ms = ms_since(start);
    for (const SlicedImage& image : sliced) {
        for (const PatchRow& slice : image.slices) {
            if (slice.patches_h * slice.patches_w > vision_->max_patches())
                throw VisionError("a slice of " + std::to_string(slice.patches_h) + "x" + std::to_string(slice.patches_w) +
                                  " patches exceeds the encoder's static max_patches=" +
                                  std::to_string(vision_->max_patches()) + ": export with a larger max_patches");
            start = clock_type::now();
            const VisionBatch batch = vision_batch(slice, vision_->max_patches(), vision_->batch(),
                                                   manifest_.num_patches_per_side, manifest_.resampler,
                                                   manifest_.slice.patch_size);
            out.push_back(vision_->encode(batch));
            stats.vision_slice_ms.push_back(ms_since(start));
            stats.vision_ms += stats.vision_slice_ms.back();
            if (out.back().rows != manifest_.query_num || out.back().width != manifest_.hidden_size)
                throw VisionError(vision_->describe() + " returned [" + std::to_string(out.back().rows) + ", " +
                                  std::to_string(out.back().width) + "] per slice; the decoder takes [" +
                                  std::to_string(manifest_.query_num) + ", " + std::to_string(manifest_.hidden_size) +
                                  "]: the vision artifact is from another export");
        }
    }
    return out;
}

RunResult Pipeline::run(const std::vector<RgbImage>& images, const std::string& question, const RunOptions& options,
                        const std::function<void(const std::string&)>& on_text) {
    const auto request = clock_type::now();
    RunResult result;
    RunStats& stats = result.stats;
    stats.model_load_ms = model_load_ms_;
    stats.vision_runtime = vision_description();
    std::vector<std::optional<Size>> grids;
    const std::vector<Embeddings> vision = encode_images(images, grids, stats);

    auto start = clock_type::now();
    const std::string prompt = build_prompt(*manifest_.assembly, manifest_.query_num, grids, question);
    for (int32_t id : tokenizer_->encode(prompt)) result.prompt_ids.push_back(id);
    const auto bounds = image_bounds(result.prompt_ids, bound_tokens(manifest_), manifest_.query_num, vision.size());
    stats.token_encode_ms = ms_since(start);
    if (static_cast<int64_t>(result.prompt_ids.size()) >= decoder_->max_seq_len())
        throw PromptError("the prompt is " + std::to_string(result.prompt_ids.size()) + " tokens and the decoder's cache "
                          "holds " + std::to_string(decoder_->max_seq_len()) +
                          ": use fewer or smaller images, a shorter question, or export with a larger max_seq_len");

    Embeddings embeds = decoder_->embed(result.prompt_ids);
    for (size_t k = 0; k < bounds.size(); ++k)
        std::memcpy(embeds.row(bounds[k].first), vision[k].values.data(), vision[k].values.size() * sizeof(float));

    const std::set<int64_t> stop = options.ignore_stop ? std::set<int64_t>{}
                                                       : std::set<int64_t>(manifest_.stop_ids.begin(), manifest_.stop_ids.end());
    StreamDecoder stream(*tokenizer_, /*skip_special=*/true);
    const double before_prefill_ms = ms_since(request);
    const Generation g = generate(*decoder_, embeds, options.max_new_tokens, stop, options.sampling, [&](int64_t id) {
        const std::string piece = stream.push(static_cast<int32_t>(id));
        if (on_text && !piece.empty()) on_text(piece);
    });
    const std::string rest = stream.finish();
    if (on_text && !rest.empty()) on_text(rest);

    result.tokens = g.tokens;
    std::vector<int32_t> shown;
    for (int64_t id : g.tokens)
        if (!stop.count(id)) shown.push_back(static_cast<int32_t>(id));
    result.text = tokenizer_->decode(shown, /*skip_special=*/true);
    stats.prompt_tokens = g.prompt_tokens;
    stats.generated_tokens = static_cast<int64_t>(g.tokens.size());
    stats.prefill_ms = g.prefill_ms;
    stats.time_to_first_token_ms = before_prefill_ms + g.first_token_ms;
    stats.decode_ms = g.decode_ms;
    stats.decode_steps = g.decode_steps;
    stats.stopped_by = g.stopped_by;
    return result;
}

}  // namespace edgevlm
