// Core ML vision artifacts (backends/coreml.py: an fp16 ML program .mlpackage) for iOS and macOS.
// The package is compiled once to .mlmodelc and cached; inputs are built in the dtypes the model
// declares (read from its description) and the output is copied to float32 Embeddings.
// Built only with EDGEVLM_WITH_COREML (Objective-C++, ARC: -fobjc-arc).
//
// Not compiled or run where it was written (Linux, no Apple SDK): written against Apple's documented
// Core ML API; see runtime/platforms/README.md.
#include "edgevlm/vision.h"

#import <CoreML/CoreML.h>
#import <Foundation/Foundation.h>

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#if !__has_feature(objc_arc)
#error "vision_coreml.mm needs ARC: compile it with -fobjc-arc"
#endif

namespace edgevlm {

namespace {

// export/vision.py INPUT_NAMES and OUTPUT_NAMES
constexpr std::array<const char*, 4> kInputs = {"pixel_values", "patch_mask", "position_ids", "resampler_pos"};
constexpr const char* kOutput = "vision_embeds";

std::string text(NSString* s) { return s != nil ? std::string(s.UTF8String) : std::string(); }

std::string why(NSError* error) {
    return error != nil ? text(error.localizedDescription) : std::string("no reason given");
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "cpu-and-ne" (default), "all", "cpu-only", "cpu-and-gpu"; the manifest's CPU_AND_NE spelling too.
MLComputeUnits compute_units_named(const std::string& given, std::string& canonical) {
    std::string name;
    for (char c : given) name += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name.empty()) name = "cpu-and-ne";
    canonical = name;
    if (name == "all") return MLComputeUnitsAll;
    if (name == "cpu-only") return MLComputeUnitsCPUOnly;
    if (name == "cpu-and-gpu") return MLComputeUnitsCPUAndGPU;
    if (name == "cpu-and-ne") {
        if (@available(macOS 13.0, iOS 16.0, *)) return MLComputeUnitsCPUAndNeuralEngine;
        throw VisionError("compute units cpu-and-ne need iOS 16 / macOS 13 or newer: use `all` on this OS");
    }
    throw VisionError("unknown Core ML compute units `" + given + "`: use cpu-and-ne, all, cpu-only or cpu-and-gpu");
}

// Identifies the package's contents cheaply (paths, sizes, modification times of every file), so a
// changed or replaced package compiles anew instead of reusing a stale .mlmodelc.
std::string package_key(NSURL* package) {
    uint64_t hash = 1469598103934665603ull;  // FNV-1a 64
    auto mix = [&hash](const void* data, size_t size) {
        const auto* bytes = static_cast<const unsigned char*>(data);
        for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
    };
    const std::string root = text(package.path);
    mix(root.data(), root.size());
    NSDirectoryEnumerator<NSString*>* files = [[NSFileManager defaultManager] enumeratorAtPath:package.path];
    NSMutableArray<NSString*>* names = [NSMutableArray array];
    for (NSString* name in files) [names addObject:name];
    [names sortUsingSelector:@selector(compare:)];  // enumeration order is not specified
    for (NSString* name in names) {
        const std::string path = root + "/" + text(name);
        struct stat info {};
        if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) continue;
        const int64_t facts[3] = {static_cast<int64_t>(info.st_size), static_cast<int64_t>(info.st_mtimespec.tv_sec),
                                  static_cast<int64_t>(info.st_mtimespec.tv_nsec)};
        mix(path.data(), path.size());
        mix(facts, sizeof facts);
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
    return hex;
}

// The compiled model for `package`: Caches/edgevlm-coreml/<stem>-<key>.mlmodelc, compiled on first
// use. The system may purge Caches; then it is compiled again.
NSURL* compiled_model(const std::string& path) {
    NSURL* package = [NSURL fileURLWithPath:@(path.c_str())];
    if (ends_with(path, ".mlmodelc")) return package;  // already compiled (e.g. by Xcode)
    NSFileManager* fm = [NSFileManager defaultManager];
    BOOL is_dir = NO;
    if (![fm fileExistsAtPath:package.path isDirectory:&is_dir] || !is_dir)
        throw VisionError("cannot open " + path + ": a Core ML package is a folder (.mlpackage), and there is none");
    NSError* error = nil;
    NSURL* caches = [fm URLForDirectory:NSCachesDirectory inDomain:NSUserDomainMask appropriateForURL:nil create:YES
                                  error:&error];
    if (caches == nil) throw VisionError("no Caches folder for the compiled Core ML model: " + why(error));
    NSURL* folder = [caches URLByAppendingPathComponent:@"edgevlm-coreml" isDirectory:YES];
    if (![fm createDirectoryAtURL:folder withIntermediateDirectories:YES attributes:nil error:&error])
        throw VisionError("cannot create " + text(folder.path) + ": " + why(error));
    NSString* stem = package.lastPathComponent.stringByDeletingPathExtension;
    NSString* name = [NSString stringWithFormat:@"%@-%s.mlmodelc", stem, package_key(package).c_str()];
    NSURL* cached = [folder URLByAppendingPathComponent:name isDirectory:YES];
    if ([fm fileExistsAtPath:cached.path]) return cached;

    NSURL* fresh = [MLModel compileModelAtURL:package error:&error];  // into a temporary folder
    if (fresh == nil)
        throw VisionError("Core ML could not compile " + path + ": " + why(error) +
                          ". Re-export it with `edgevlm export --recipe ios-m4` for this OS's Core ML");
    // move beside the cache entry, then rename into place: rename is atomic, and a process that
    // loses a race to another one compiling the same package keeps the winner's copy
    NSURL* staging = [folder URLByAppendingPathComponent:[NSString stringWithFormat:@"%@.partial-%d", name, getpid()]];
    [fm removeItemAtURL:staging error:nil];
    if (![fm moveItemAtURL:fresh toURL:staging error:&error])
        throw VisionError("cannot move the compiled model into " + text(folder.path) + ": " + why(error));
    if (std::rename(staging.fileSystemRepresentation, cached.fileSystemRepresentation) != 0) {
        [fm removeItemAtURL:staging error:nil];
        if (![fm fileExistsAtPath:cached.path])
            throw VisionError("cannot store the compiled model at " + text(cached.path) + ": " + std::strerror(errno));
    }
    return cached;
}

struct InputSpec {
    MLMultiArrayDataType type = MLMultiArrayDataTypeFloat32;
    std::vector<int64_t> shape;
    int64_t count() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
};

size_t element_size(MLMultiArrayDataType type) {
    switch (type) {
        case MLMultiArrayDataTypeDouble: return 8;
        case MLMultiArrayDataTypeFloat32: return 4;
        case MLMultiArrayDataTypeInt32: return 4;
        default: break;
    }
    if (@available(macOS 12.0, iOS 16.0, *))
        if (type == MLMultiArrayDataTypeFloat16) return 2;
    return 0;
}

std::string type_name(MLMultiArrayDataType type) {
    switch (type) {
        case MLMultiArrayDataTypeDouble: return "float64";
        case MLMultiArrayDataTypeFloat32: return "float32";
        case MLMultiArrayDataTypeInt32: return "int32";
        default: break;
    }
    if (@available(macOS 12.0, iOS 16.0, *))
        if (type == MLMultiArrayDataTypeFloat16) return "float16";
    return "data type " + std::to_string(static_cast<long>(type));
}

// values (float or int32) -> a contiguous buffer of `type`, element by element
template <typename T>
std::vector<uint8_t> to_buffer(const std::vector<T>& values, MLMultiArrayDataType type) {
    std::vector<uint8_t> out(values.size() * element_size(type));
    for (size_t i = 0; i < values.size(); ++i) {
        uint8_t* at = out.data() + i * element_size(type);
        if (type == MLMultiArrayDataTypeFloat32) {
            const float v = static_cast<float>(values[i]);
            std::memcpy(at, &v, sizeof v);
        } else if (type == MLMultiArrayDataTypeInt32) {
            const int32_t v = static_cast<int32_t>(values[i]);
            std::memcpy(at, &v, sizeof v);
        } else if (type == MLMultiArrayDataTypeDouble) {
            const double v = static_cast<double>(values[i]);
            std::memcpy(at, &v, sizeof v);
        } else {  // float16: the hardware conversion rounds to nearest even, as numpy's astype does
            const _Float16 v = static_cast<_Float16>(static_cast<float>(values[i]));
            std::memcpy(at, &v, sizeof v);
        }
    }
    return out;
}

float read_scalar(const uint8_t* at, MLMultiArrayDataType type) {
    if (type == MLMultiArrayDataTypeFloat32) {
        float v;
        std::memcpy(&v, at, sizeof v);
        return v;
    }
    if (type == MLMultiArrayDataTypeDouble) {
        double v;
        std::memcpy(&v, at, sizeof v);
        return static_cast<float>(v);
    }
    if (type == MLMultiArrayDataTypeInt32) {
        int32_t v;
        std::memcpy(&v, at, sizeof v);
        return static_cast<float>(v);
    }
    _Float16 v;
    std::memcpy(&v, at, sizeof v);
    return static_cast<float>(v);
}

class CoreMLVision final : public VisionEncoder {
public:
    CoreMLVision(const std::string& path, const std::string& compute_units) : path_(path) {
        @autoreleasepool {
            MLModelConfiguration* config = [[MLModelConfiguration alloc] init];
            config.computeUnits = compute_units_named(compute_units, units_);
            NSError* error = nil;
            model_ = [MLModel modelWithContentsOfURL:compiled_model(path) configuration:config error:&error];
            if (model_ == nil)
                throw VisionError("Core ML could not load " + path + " (" + units_ + "): " + why(error));
            read_description();
        }
    }

    int max_patches() const override { return static_cast<int>(inputs_[1].shape[1]); }
    int batch() const override { return static_cast<int>(inputs_[1].shape[0]); }
    std::string describe() const override { return "coreml " + units_ + " (" + path_ + ")"; }

    Embeddings encode(const VisionBatch& in) override {
        for (size_t k = 0; k < kInputs.size(); ++k) {
            const size_t given = k == 0 ? in.pixel_values.size() : k == 1 ? in.patch_mask.size()
                               : k == 2 ? in.position_ids.size() : in.resampler_pos.size();
            if (given != static_cast<size_t>(inputs_[k].count()))
                throw VisionError(describe() + ": " + kInputs[k] + " has " + std::to_string(given) + " values, the " +
                                  "model takes " + std::to_string(inputs_[k].count()) + " (another max_patches/batch)");
        }
        @autoreleasepool {
            std::array<std::vector<uint8_t>, 4> buffers = {to_buffer(in.pixel_values, inputs_[0].type),
                                                           to_buffer(in.patch_mask, inputs_[1].type),
                                                           to_buffer(in.position_ids, inputs_[2].type),
                                                           to_buffer(in.resampler_pos, inputs_[3].type)};
            NSMutableDictionary<NSString*, MLFeatureValue*>* features = [NSMutableDictionary dictionary];
            for (size_t k = 0; k < kInputs.size(); ++k) {
                // our buffers, row-major: Core ML reads them during the prediction below, which is
                // synchronous, so they outlive it (no deallocator)
                NSMutableArray<NSNumber*>* shape = [NSMutableArray array];
                NSMutableArray<NSNumber*>* strides = [NSMutableArray array];
                int64_t stride = 1;
                for (size_t d = inputs_[k].shape.size(); d-- > 0;) {
                    [shape insertObject:@(inputs_[k].shape[d]) atIndex:0];
                    [strides insertObject:@(stride) atIndex:0];
                    stride *= inputs_[k].shape[d];
                }
                NSError* error = nil;
                MLMultiArray* array = [[MLMultiArray alloc] initWithDataPointer:buffers[k].data() shape:shape
                                                                       dataType:inputs_[k].type strides:strides
                                                                    deallocator:nil error:&error];
                if (array == nil) throw VisionError(std::string("wrapping ") + kInputs[k] + " for Core ML: " + why(error));
                features[@(kInputs[k])] = [MLFeatureValue featureValueWithMultiArray:array];
            }
            NSError* error = nil;
            MLDictionaryFeatureProvider* provider = [[MLDictionaryFeatureProvider alloc] initWithDictionary:features
                                                                                                      error:&error];
            if (provider == nil) throw VisionError("building Core ML inputs: " + why(error));
            id<MLFeatureProvider> result = [model_ predictionFromFeatures:provider error:&error];
            if (result == nil) throw VisionError("Core ML prediction failed for " + path_ + ": " + why(error));
            MLMultiArray* out = [result featureValueForName:@(kOutput)].multiArrayValue;
            if (out == nil) throw VisionError(path_ + " returned no " + kOutput + " array");
            return first_row(out);
        }
    }

private:
    // The four inputs' dtypes and static shapes, and the output's rank, from the model's description.
    void read_description() {
        MLModelDescription* description = model_.modelDescription;
        std::string names;
        for (NSString* name in description.inputDescriptionsByName)
            names += (names.empty() ? "" : ", ") + text(name);
        static const size_t kRanks[4] = {4, 2, 2, 3};
        for (size_t k = 0; k < kInputs.size(); ++k) {
            MLFeatureDescription* feature = description.inputDescriptionsByName[@(kInputs[k])];
            if (feature == nil || feature.type != MLFeatureTypeMultiArray || description.inputDescriptionsByName.count != 4)
                throw VisionError(path_ + " is not an edgevlm vision encoder: its inputs are [" + names +
                                  "], not pixel_values, patch_mask, position_ids, resampler_pos");
            MLMultiArrayConstraint* constraint = feature.multiArrayConstraint;
            inputs_[k].type = constraint.dataType;
            for (NSNumber* d in constraint.shape) inputs_[k].shape.push_back(d.longLongValue);
            bool fixed = inputs_[k].shape.size() == kRanks[k];
            for (int64_t d : inputs_[k].shape) fixed = fixed && d > 0;
            if (!fixed || element_size(inputs_[k].type) == 0)
                throw VisionError(path_ + ": input " + kInputs[k] + " is not a static-shape " + std::to_string(kRanks[k]) +
                                  "-d array of a supported type (it is " + type_name(inputs_[k].type) +
                                  "): export it with `edgevlm export --recipe ios-m4`");
        }
        MLFeatureDescription* output = description.outputDescriptionsByName[@(kOutput)];
        if (output == nil || output.type != MLFeatureTypeMultiArray)
            throw VisionError(path_ + " has no " + kOutput + " output array: export it with `edgevlm export --recipe ios-m4`");
    }

    // Row 0 of the [batch, queries, width] output, whatever its dtype and strides, as float32.
    Embeddings first_row(MLMultiArray* out) const {
        if (out.shape.count != 3)
            throw VisionError(path_ + ": " + kOutput + " has rank " + std::to_string(out.shape.count) + ", not 3");
        const MLMultiArrayDataType type = out.dataType;
        const size_t size = element_size(type);
        if (size == 0) throw VisionError(path_ + ": " + kOutput + " is " + type_name(type) + ", not a float array");
        Embeddings result;
        result.rows = out.shape[1].longLongValue;
        result.width = out.shape[2].longLongValue;
        result.values.resize(static_cast<size_t>(result.rows * result.width));
        const int64_t row_stride = out.strides[1].longLongValue, column_stride = out.strides[2].longLongValue;
        __block bool short_buffer = false;
        float* values = result.values.data();
        const int64_t rows = result.rows, width = result.width;
        [out getBytesWithHandler:^(const void* bytes, NSInteger length) {
            const auto* base = static_cast<const uint8_t*>(bytes);
            const int64_t last = ((rows - 1) * row_stride + (width - 1) * column_stride + 1) * static_cast<int64_t>(size);
            if (last > length) {
                short_buffer = true;
                return;
            }
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t c = 0; c < width; ++c)
                    values[r * width + c] = read_scalar(base + (r * row_stride + c * column_stride) * size, type);
        }];
        if (short_buffer) throw VisionError(path_ + ": " + kOutput + "'s storage is smaller than its shape and strides");
        return result;
    }

    std::string path_, units_;
    MLModel* model_ = nil;  // strong (ARC)
    std::array<InputSpec, 4> inputs_;
};

}  // namespace

std::unique_ptr<VisionEncoder> open_coreml_vision(const std::string& path, const std::string& compute_units) {
    return std::make_unique<CoreMLVision>(path, compute_units);
}

}  // namespace edgevlm
