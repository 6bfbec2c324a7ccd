// ONNX vision artifacts (backends/ort.py) through ONNX Runtime's C API (declared in ort_api.h).
// Built with EDGEVLM_WITH_ORT (CMake ONNXRUNTIME_LIB); without it both entry points say so.
#include "edgevlm/vision.h"

#ifdef EDGEVLM_WITH_ORT

#include <array>
#include <fstream>

#include "ort_api.h"

namespace edgevlm {

namespace {

const OrtApi* api() {
    static const OrtApi* table = OrtGetApiBase()->GetApi(ort::kApiVersion);
    if (table == nullptr)
        throw VisionError(std::string("the linked ONNX Runtime (") + OrtGetApiBase()->GetVersionString() +
                          ") is older than 1.17, the oldest this runtime calls: install onnxruntime >= 1.17 "
                          "and rebuild");
    return table;
}

template <typename S, typename... Args>
void call(const std::string& what, Args... args) {
    OrtStatus* status = ort::get<S>(api())(args...);
    if (status == nullptr) return;
    const std::string message = ort::get<ort::GetErrorMessage>(api())(status);
    ort::get<ort::ReleaseStatus>(api())(status);
    throw VisionError(what + ": " + message);
}

template <typename T, typename Release>
struct Releaser {
    void operator()(T* handle) const {
        if (handle != nullptr) ort::get<Release>(api())(handle);
    }
};
template <typename T, typename Release>
using Owned = std::unique_ptr<T, Releaser<T, Release>>;
using Env = Owned<OrtEnv, ort::ReleaseEnv>;
using Options = Owned<OrtSessionOptions, ort::ReleaseSessionOptions>;
using Session = Owned<OrtSession, ort::ReleaseSession>;
using MemoryInfo = Owned<OrtMemoryInfo, ort::ReleaseMemoryInfo>;
using Value = Owned<OrtValue, ort::ReleaseValue>;
using TypeInfo = Owned<OrtTypeInfo, ort::ReleaseTypeInfo>;
using ShapeInfo = Owned<OrtTensorTypeAndShapeInfo, ort::ReleaseTensorTypeAndShapeInfo>;

// export/vision.py INPUT_NAMES, in the order Run takes them
constexpr std::array<const char*, 4> kInputs = {"pixel_values", "patch_mask", "position_ids", "resampler_pos"};

struct TensorSpec {
    int type = 0;
    std::vector<int64_t> dims;
};

TensorSpec tensor_spec(const OrtTensorTypeAndShapeInfo* info) {
    TensorSpec spec;
    size_t rank = 0;
    call<ort::GetTensorElementType>("reading a tensor's type", info, &spec.type);
    call<ort::GetDimensionsCount>("reading a tensor's rank", info, &rank);
    spec.dims.resize(rank);
    call<ort::GetDimensions>("reading a tensor's shape", info, spec.dims.data(), rank);
    return spec;
}

std::string session_name(const OrtSession* session, size_t index, bool input) {
    OrtAllocator* allocator = nullptr;
    call<ort::GetAllocatorWithDefaultOptions>("getting ONNX Runtime's allocator", &allocator);
    char* name = nullptr;
    if (input)
        call<ort::SessionGetInputName>("reading an input name", session, index, allocator, &name);
    else
        call<ort::SessionGetOutputName>("reading an output name", session, index, allocator, &name);
    std::string out(name);
    call<ort::AllocatorFree>("freeing a name", allocator, static_cast<void*>(name));
    return out;
}

// The execution providers a manifest names (backends/ort.py) as the generic entry point spells them.
std::string provider_name(const std::string& provider) {
    if (provider == "XnnpackExecutionProvider") return "XNNPACK";
    if (provider == "QNNExecutionProvider") return "QNN";
    if (provider == "CoreMLExecutionProvider") return "CoreML";
    return provider;
}

class OrtVision final : public VisionEncoder {
public:
    OrtVision(const std::string& path, const std::string& provider, int threads, const ProviderOptions& provider_options)
        : path_(path), provider_(provider) {
        if (!std::ifstream(path, std::ios::binary))
            throw VisionError("cannot open " + path + ": no such file, or not readable");
        OrtEnv* env = nullptr;
        call<ort::CreateEnv>("creating the ONNX Runtime environment", ort::kLoggingLevelError, "edgevlm", &env);
        env_.reset(env);
        OrtSessionOptions* options = nullptr;
        call<ort::CreateSessionOptions>("creating session options", &options);
        Options owned(options);
        call<ort::SetSessionLogSeverityLevel>("setting the log level", options, ort::kLoggingLevelError);
        if (threads > 0) call<ort::SetIntraOpNumThreads>("setting the thread count", options, threads);
        if (provider != "cpu" && provider != "CPUExecutionProvider") {
            std::vector<const char*> keys, values;
            for (const auto& [key, value] : provider_options) keys.push_back(key.c_str()), values.push_back(value.c_str());
            call<ort::SessionOptionsAppendExecutionProvider>(
                "adding the " + provider + " execution provider (is it in this onnxruntime build?)", options,
                provider_name(provider).c_str(), keys.data(), values.data(), keys.size());
            // As backends/qnn.py: a node the HTP cannot take must fail the session, not run on the
            // CPU unnoticed (an EPContext model is all HTP by construction).
            if (provider_name(provider) == "QNN")
                call<ort::AddSessionConfigEntry>("refusing CPU fallback", options, "session.disable_cpu_ep_fallback", "1");
        }
        OrtSession* session = nullptr;
        call<ort::CreateSession>("loading " + path + " into ONNX Runtime", env_.get(), path.c_str(), options, &session);
        session_.reset(session);
        read_inputs();
        output_name_ = session_name(session_.get(), 0, false);
        OrtMemoryInfo* memory = nullptr;
        call<ort::CreateCpuMemoryInfo>("describing CPU memory", ort::kArenaAllocator, ort::kMemTypeDefault, &memory);
        memory_.reset(memory);
    }

    int max_patches() const override { return static_cast<int>(specs_[1].dims[1]); }
    int batch() const override { return static_cast<int>(specs_[1].dims[0]); }
    std::string describe() const override { return "onnxruntime " + provider_ + " (" + path_ + ")"; }

    Embeddings encode(const VisionBatch& in) override {
        check_vision_batch(in, batch(), max_patches(), static_cast<int>(specs_[3].dims[2]), describe());
        // ONNX Runtime only reads inputs; its C API takes them as void*
        void* data[4] = {const_cast<float*>(in.pixel_values.data()), const_cast<float*>(in.patch_mask.data()),
                         const_cast<int32_t*>(in.position_ids.data()), const_cast<float*>(in.resampler_pos.data())};
        const size_t bytes[4] = {in.pixel_values.size() * sizeof(float), in.patch_mask.size() * sizeof(float),
                                 in.position_ids.size() * sizeof(int32_t), in.resampler_pos.size() * sizeof(float)};
        std::array<Value, 4> values;
        const OrtValue* inputs[4];
        for (size_t i = 0; i < 4; ++i) {
            OrtValue* value = nullptr;
            call<ort::CreateTensorWithDataAsOrtValue>(std::string("wrapping ") + kInputs[i], memory_.get(), data[i],
                                                      bytes[i], specs_[i].dims.data(), specs_[i].dims.size(),
                                                      specs_[i].type, &value);
            values[i].reset(value);
            inputs[i] = value;
        }
        const char* output_name = output_name_.c_str();
        OrtValue* raw = nullptr;
        call<ort::Run>("running " + path_, session_.get(), static_cast<const OrtRunOptions*>(nullptr), kInputs.data(),
                       inputs, size_t{4}, &output_name, size_t{1}, &raw);
        Value output(raw);
        OrtTensorTypeAndShapeInfo* info = nullptr;
        call<ort::GetTensorTypeAndShape>("reading the output's shape", static_cast<const OrtValue*>(raw), &info);
        const TensorSpec spec = tensor_spec(ShapeInfo(info).get());
        if (spec.type != ort::kElementFloat || spec.dims.size() != 3)
            throw VisionError(path_ + ": the output is not a float32 [batch, queries, width] tensor");
        void* out = nullptr;
        call<ort::GetTensorMutableData>("reading the output", raw, &out);
        Embeddings result;  // row 0: the slice (the others are padding)
        result.rows = spec.dims[1];
        result.width = spec.dims[2];
        const float* first = static_cast<const float*>(out);
        result.values.assign(first, first + result.rows * result.width);
        return result;
    }

private:
    // The four inputs by name, with their static shapes (the artifact's batch and max_patches).
    void read_inputs() {
        size_t count = 0;
        call<ort::SessionGetInputCount>("counting inputs", session_.get(), &count);
        std::string names;
        for (size_t i = 0; i < count; ++i) {
            const std::string name = session_name(session_.get(), i, true);
            names += (names.empty() ? "" : ", ") + name;
            for (size_t k = 0; k < kInputs.size(); ++k) {
                if (name != kInputs[k]) continue;
                OrtTypeInfo* type = nullptr;
                call<ort::SessionGetInputTypeInfo>("reading input " + name, session_.get(), i, &type);
                TypeInfo owned(type);
                const OrtTensorTypeAndShapeInfo* tensor = nullptr;
                call<ort::CastTypeInfoToTensorInfo>("reading input " + name, static_cast<const OrtTypeInfo*>(type),
                                                    &tensor);
                if (tensor == nullptr) throw VisionError(path_ + ": input " + name + " is not a tensor");
                specs_[k] = tensor_spec(tensor);
                found_[k] = true;
            }
        }
        static const int kRanks[4] = {4, 2, 2, 3};
        static const int kTypes[4] = {ort::kElementFloat, ort::kElementFloat, ort::kElementInt32, ort::kElementFloat};
        for (size_t k = 0; k < kInputs.size(); ++k) {
            if (!found_[k] || count != kInputs.size())
                throw VisionError(path_ + " is not an edgevlm vision encoder: its inputs are [" + names +
                                  "], not pixel_values, patch_mask, position_ids, resampler_pos");
            const TensorSpec& spec = specs_[k];
            bool fixed = static_cast<int>(spec.dims.size()) == kRanks[k];
            for (int64_t d : spec.dims) fixed = fixed && d > 0;
            if (!fixed || spec.type != kTypes[k])
                throw VisionError(path_ + ": input " + kInputs[k] + " is not a static-shape tensor of the expected "
                                  "type and rank: export it with `edgevlm export` (vision backend ort)");
        }
    }

    std::string path_, provider_, output_name_;
    Env env_;
    Session session_;
    MemoryInfo memory_;
    std::array<TensorSpec, 4> specs_;
    std::array<bool, 4> found_ = {false, false, false, false};
};

}  // namespace

std::unique_ptr<VisionEncoder> open_ort_vision(const std::string& onnx_path, const std::string& provider,
                                               int threads, const ProviderOptions& provider_options) {
    return std::make_unique<OrtVision>(onnx_path, provider, threads, provider_options);
}

bool ort_available() { return true; }

}  // namespace edgevlm

#else  // built without ONNX Runtime

namespace edgevlm {

std::unique_ptr<VisionEncoder> open_ort_vision(const std::string& onnx_path, const std::string&, int,
                                               const ProviderOptions&) {
    throw VisionError("this runtime was built without ONNX Runtime, so it cannot run " + onnx_path +
                      ": install onnxruntime into the Python environment that builds it (pip install onnxruntime) "
                      "and rebuild (`edgevlm build-runner`), or encode with a .pte exported with vision_in_pte");
}

bool ort_available() { return false; }

}  // namespace edgevlm

#endif
