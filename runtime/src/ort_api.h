// The few functions of ONNX Runtime's C API that vision_ort.cpp calls, declared here: the
// onnxruntime wheels ship libonnxruntime.so without its headers, and no package we can install
// carries them.
//
// The C API is ABI-stable and append-only: OrtGetApiBase()->GetApi(version) returns a table of
// function pointers whose slots never move. The slot numbers and signatures below were counted
// from onnxruntime's include/onnxruntime/core/session/onnxruntime_c_api.h (the members of
// `struct OrtApi`, in declaration order), as were the enum values. We ask for API version 17
// (ONNX Runtime 1.17), which has every slot used here, so any runtime from 1.17 on serves.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {
// opaque handles
struct OrtApi;
struct OrtAllocator;
struct OrtEnv;
struct OrtMemoryInfo;
struct OrtRunOptions;
struct OrtSession;
struct OrtSessionOptions;
struct OrtStatus;  // nullptr: success
struct OrtTensorTypeAndShapeInfo;
struct OrtTypeInfo;
struct OrtValue;

struct OrtApiBase {
    const OrtApi* (*GetApi)(uint32_t version);  // nullptr if the library is older than `version`
    const char* (*GetVersionString)();
};
const OrtApiBase* OrtGetApiBase();
}

namespace edgevlm::ort {

constexpr uint32_t kApiVersion = 17;

// enum values (C enums: int-sized)
constexpr int kLoggingLevelError = 3;      // OrtLoggingLevel ORT_LOGGING_LEVEL_ERROR
constexpr int kElementFloat = 1;           // ONNXTensorElementDataType FLOAT
constexpr int kElementInt32 = 6;           //                           INT32
constexpr int kArenaAllocator = 1;         // OrtAllocatorType OrtArenaAllocator
constexpr int kMemTypeDefault = 0;         // OrtMemType OrtMemTypeDefault

// One slot of the table: its index and the function's type.
template <size_t Index, typename Fn>
struct Slot {
    static constexpr size_t index = Index;
    using type = Fn;
};

using Status = OrtStatus*;
using GetErrorMessage = Slot<2, const char* (*)(const OrtStatus*)>;
using CreateEnv = Slot<3, Status (*)(int log_level, const char* log_id, OrtEnv** out)>;
using CreateSession = Slot<7, Status (*)(const OrtEnv*, const char* model_path, const OrtSessionOptions*,
                                         OrtSession** out)>;
using Run = Slot<9, Status (*)(OrtSession*, const OrtRunOptions*, const char* const* input_names,
                               const OrtValue* const* inputs, size_t input_count, const char* const* output_names,
                               size_t output_count, OrtValue** outputs)>;
using CreateSessionOptions = Slot<10, Status (*)(OrtSessionOptions** out)>;
using SetSessionLogSeverityLevel = Slot<22, Status (*)(OrtSessionOptions*, int level)>;
using SetIntraOpNumThreads = Slot<24, Status (*)(OrtSessionOptions*, int threads)>;
using SessionGetInputCount = Slot<30, Status (*)(const OrtSession*, size_t* out)>;
using SessionGetInputTypeInfo = Slot<33, Status (*)(const OrtSession*, size_t index, OrtTypeInfo** out)>;
using SessionGetInputName = Slot<36, Status (*)(const OrtSession*, size_t index, OrtAllocator*, char** out)>;
using SessionGetOutputName = Slot<37, Status (*)(const OrtSession*, size_t index, OrtAllocator*, char** out)>;
using CreateTensorWithDataAsOrtValue = Slot<49, Status (*)(const OrtMemoryInfo*, void* data, size_t bytes,
                                                           const int64_t* shape, size_t rank, int element_type,
                                                           OrtValue** out)>;
using GetTensorMutableData = Slot<51, Status (*)(OrtValue*, void** out)>;
using CastTypeInfoToTensorInfo = Slot<55, Status (*)(const OrtTypeInfo*, const OrtTensorTypeAndShapeInfo** out)>;
using GetTensorElementType = Slot<60, Status (*)(const OrtTensorTypeAndShapeInfo*, int* out)>;
using GetDimensionsCount = Slot<61, Status (*)(const OrtTensorTypeAndShapeInfo*, size_t* out)>;
using GetDimensions = Slot<62, Status (*)(const OrtTensorTypeAndShapeInfo*, int64_t* dims, size_t count)>;
using GetTensorTypeAndShape = Slot<65, Status (*)(const OrtValue*, OrtTensorTypeAndShapeInfo** out)>;
using CreateCpuMemoryInfo = Slot<69, Status (*)(int allocator_type, int mem_type, OrtMemoryInfo** out)>;
using AllocatorFree = Slot<76, Status (*)(OrtAllocator*, void* p)>;
using GetAllocatorWithDefaultOptions = Slot<78, Status (*)(OrtAllocator** out)>;
using ReleaseEnv = Slot<92, void (*)(OrtEnv*)>;
using ReleaseStatus = Slot<93, void (*)(OrtStatus*)>;
using ReleaseMemoryInfo = Slot<94, void (*)(OrtMemoryInfo*)>;
using ReleaseSession = Slot<95, void (*)(OrtSession*)>;
using ReleaseValue = Slot<96, void (*)(OrtValue*)>;
using ReleaseTypeInfo = Slot<98, void (*)(OrtTypeInfo*)>;
using ReleaseTensorTypeAndShapeInfo = Slot<99, void (*)(OrtTensorTypeAndShapeInfo*)>;
using ReleaseSessionOptions = Slot<100, void (*)(OrtSessionOptions*)>;
using AddSessionConfigEntry = Slot<130, Status (*)(OrtSessionOptions*, const char* key, const char* value)>;
using SessionOptionsAppendExecutionProvider =
    Slot<216, Status (*)(OrtSessionOptions*, const char* provider, const char* const* keys,
                         const char* const* values, size_t count)>;

// The function in slot S of `api`.
template <typename S>
typename S::type get(const OrtApi* api) {
    using Entry = void (*)();
    return reinterpret_cast<typename S::type>(reinterpret_cast<const Entry*>(api)[S::index]);
}

}  // namespace edgevlm::ort
