// The vision_encoder method of an ExecuTorch program (a decoder .pte exported with the recipe's
// `vision_in_pte: true`; export/decoder/pte.py), through ExecuTorch's Module like the decoder.
// Its static shapes (batch, max_patches) come from the method's metadata.
#include <fstream>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include "edgevlm/vision.h"

namespace edgevlm {

namespace et = executorch;
using et::extension::Module;

namespace {

constexpr const char* kVisionMethod = "vision_encoder";  // export/decoder/pte_names.py VISION_ENCODER

std::string error_name(et::runtime::Error error) {
    return "ExecuTorch error " + std::to_string(static_cast<int>(error));
}

std::unique_ptr<Module> load_program(const std::string& path) {
    if (!std::ifstream(path, std::ios::binary))
        throw VisionError("cannot open " + path + ": no such file, or not readable");
    auto module = std::make_unique<Module>(path, Module::LoadMode::Mmap);
    const auto error = module->load();
    if (error != et::runtime::Error::Ok)
        throw VisionError("cannot load " + path + " (" + error_name(error) +
                          "): not an ExecuTorch program, or written by an incompatible ExecuTorch");
    return module;
}

bool has_vision_method(Module& module, const std::string& path) {
    auto names = module.method_names();
    if (!names.ok()) throw VisionError("cannot list the methods of " + path + " (" + error_name(names.error()) + ")");
    return names->count(kVisionMethod) > 0;
}

std::vector<int32_t> tensor_sizes(const et::runtime::MethodMeta& meta, size_t index, bool input) {
    auto info = input ? meta.input_tensor_meta(index) : meta.output_tensor_meta(index);
    if (!info.ok())
        throw VisionError(std::string("vision_encoder's ") + (input ? "input " : "output ") + std::to_string(index) +
                          " is not a tensor: re-export the .pte with this edgevlm");
    return std::vector<int32_t>(info->sizes().begin(), info->sizes().end());
}

class PteVision final : public VisionEncoder {
public:
    explicit PteVision(const std::string& path) : path_(path), module_(load_program(path)) {
        if (!has_vision_method(*module_, path))
            throw VisionError(path + " has no vision_encoder method: export the decoder with `vision_in_pte: true` "
                              "in its recipe entry (backend executorch), or use the export's own vision artifact");
        const auto error = module_->load_method(kVisionMethod);
        if (error != et::runtime::Error::Ok)
            throw VisionError("cannot load vision_encoder of " + path + " (" + error_name(error) + ")");
        auto meta = module_->method_meta(kVisionMethod);
        if (!meta.ok() || meta->num_inputs() != 4 || meta->num_outputs() < 1)
            throw VisionError("vision_encoder of " + path + " does not take (pixel_values, patch_mask, position_ids, "
                              "resampler_pos): re-export it with this edgevlm");
        const auto mask = tensor_sizes(*meta, 1, true), pos = tensor_sizes(*meta, 3, true);
        const auto out = tensor_sizes(*meta, 0, false);
        if (mask.size() != 2 || pos.size() != 3 || out.size() != 3)
            throw VisionError("vision_encoder of " + path + " has unexpected input ranks: re-export it");
        batch_ = mask[0];
        max_patches_ = mask[1];
        embed_dim_ = pos[2];
    }

    int max_patches() const override { return max_patches_; }
    int batch() const override { return batch_; }
    std::string describe() const override { return std::string("executorch vision_encoder (") + path_ + ")"; }

    Embeddings encode(const VisionBatch& in) override {
        check_vision_batch(in, batch_, max_patches_, embed_dim_, describe());
        // copies: from_blob wants mutable buffers (ExecuTorch only reads them)
        std::vector<float> pixels(in.pixel_values), mask(in.patch_mask), pos(in.resampler_pos);
        std::vector<int32_t> ids(in.position_ids);
        const int b = in.batch, L = in.max_patches, p = in.patch_size;
        auto pixel_t = et::extension::from_blob(pixels.data(), {b, 3, p, L * p});
        auto mask_t = et::extension::from_blob(mask.data(), {b, L});
        auto ids_t = et::extension::from_blob(ids.data(), {b, L}, et::aten::ScalarType::Int);
        auto pos_t = et::extension::from_blob(pos.data(), {b, L, in.embed_dim});
        auto out = module_->execute(kVisionMethod, {pixel_t, mask_t, ids_t, pos_t});
        if (!out.ok()) throw VisionError("vision_encoder of " + path_ + " failed: " + error_name(out.error()));
        const auto& tensor = out->at(0).toTensor();
        Embeddings result;  // row 0: the slice (the others are padding)
        result.rows = tensor.size(1);
        result.width = tensor.size(2);
        const float* data = tensor.const_data_ptr<float>();
        result.values.assign(data, data + result.rows * result.width);
        return result;
    }

private:
    std::string path_;
    std::unique_ptr<Module> module_;
    int batch_ = 0, max_patches_ = 0, embed_dim_ = 0;
};

}  // namespace

std::unique_ptr<VisionEncoder> open_pte_vision(const std::string& pte_path) {
    return std::make_unique<PteVision>(pte_path);
}

bool pte_has_vision(const std::string& pte_path) {
    auto module = load_program(pte_path);
    return has_vision_method(*module, pte_path);
}

}  // namespace edgevlm
