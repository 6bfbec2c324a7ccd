// JNI bridge for ai.edgevlm.EdgeVLM (EdgeVLM.kt) over edgevlm's C API (include/edgevlm/c_api.h).
// Pixels arrive as Android's ARGB_8888 ints (Bitmap.getPixels) or RGBA bytes and go to the C API as
// RGBA8; text crosses as UTF-16 <-> UTF-8 converted here, because JNI's *StringUTF* functions speak
// "modified UTF-8" (an emoji becomes two 3-byte surrogates, which the tokenizer would not recognise).
#include <jni.h>

#include <cstdint>
#include <string>
#include <vector>

#include "edgevlm/c_api.h"

namespace {

constexpr char32_t kReplacement = 0xFFFD;

std::string utf8_from_jstring(JNIEnv* env, jstring text) {
    const jsize length = env->GetStringLength(text);
    const jchar* units = env->GetStringChars(text, nullptr);
    if (units == nullptr) return {};  // OutOfMemoryError pending
    std::string out;
    out.reserve(static_cast<size_t>(length));
    for (jsize i = 0; i < length; ++i) {
        char32_t c = units[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < length && units[i + 1] >= 0xDC00 && units[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (units[i + 1] - 0xDC00);
            ++i;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = kReplacement;  // a lone surrogate has no UTF-8 form
        }
        if (c < 0x80) {
            out += static_cast<char>(c);
        } else if (c < 0x800) {
            out += static_cast<char>(0xC0 | (c >> 6));
            out += static_cast<char>(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out += static_cast<char>(0xE0 | (c >> 12));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (c >> 18));
            out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (c & 0x3F));
        }
    }
    env->ReleaseStringChars(text, units);
    return out;
}

// UTF-8 -> java.lang.String; a malformed sequence becomes U+FFFD (the C API never sends one).
jstring jstring_from_utf8(JNIEnv* env, const char* data, size_t size) {
    const auto* p = reinterpret_cast<const unsigned char*>(data);
    std::vector<jchar> units;
    units.reserve(size);
    size_t i = 0;
    while (i < size) {
        const unsigned char lead = p[i];
        const int extra = lead < 0x80 ? 0 : (lead >> 5) == 0x6 ? 1 : (lead >> 4) == 0xE ? 2 : (lead >> 3) == 0x1E ? 3 : -1;
        bool ok = extra >= 0 && i + static_cast<size_t>(extra) < size;
        char32_t c = 0;
        if (ok) {
            static const unsigned char kLeadBits[4] = {0x7F, 0x1F, 0x0F, 0x07};
            static const char32_t kMin[4] = {0, 0x80, 0x800, 0x10000};  // shortest form only
            c = lead & kLeadBits[extra];
            for (int k = 1; ok && k <= extra; ++k) {
                ok = (p[i + k] & 0xC0) == 0x80;
                c = (c << 6) | (p[i + k] & 0x3F);
            }
            ok = ok && c >= kMin[extra] && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
        }
        if (!ok) {
            units.push_back(static_cast<jchar>(kReplacement));
            ++i;
            continue;
        }
        if (c >= 0x10000) {
            units.push_back(static_cast<jchar>(0xD800 + ((c - 0x10000) >> 10)));
            units.push_back(static_cast<jchar>(0xDC00 + ((c - 0x10000) & 0x3FF)));
        } else {
            units.push_back(static_cast<jchar>(c));
        }
        i += static_cast<size_t>(extra) + 1;
    }
    return env->NewString(units.data(), static_cast<jsize>(units.size()));
}

void throw_java(JNIEnv* env, const char* class_name, const std::string& message) {
    jclass cls = env->FindClass(class_name);
    if (cls != nullptr) env->ThrowNew(cls, message.c_str());
}

// ai.edgevlm.EdgeVLMException(status, message) for a failed C call, with edgevlm_last_error().
void throw_edgevlm(JNIEnv* env, edgevlm_status status) {
    jclass cls = env->FindClass("ai/edgevlm/EdgeVLMException");
    if (cls == nullptr) return;  // NoClassDefFoundError pending
    jmethodID init = env->GetMethodID(cls, "<init>", "(ILjava/lang/String;)V");
    if (init == nullptr) return;
    const char* message = edgevlm_last_error();
    jstring text = jstring_from_utf8(env, message, std::char_traits<char>::length(message));
    if (text == nullptr) return;
    auto* error = static_cast<jthrowable>(env->NewObject(cls, init, static_cast<jint>(status), text));
    if (error != nullptr) env->Throw(error);
}

// Streams text to a TextCallback on the calling thread. Once the callback throws, the rest of the
// generation's text is dropped and the exception surfaces when nativeRun returns.
struct Stream {
    JNIEnv* env;
    jobject callback;
    jmethodID on_text;
};

void on_text(const char* utf8, size_t length, void* user_data) {
    auto* stream = static_cast<Stream*>(user_data);
    JNIEnv* env = stream->env;
    if (env->ExceptionCheck()) return;
    jstring piece = jstring_from_utf8(env, utf8, length);
    if (piece == nullptr) return;
    env->CallVoidMethod(stream->callback, stream->on_text, piece);
    env->DeleteLocalRef(piece);  // one per piece: a long answer would fill the local reference table
}

edgevlm_pipeline* pipeline_of(jlong handle) { return reinterpret_cast<edgevlm_pipeline*>(static_cast<intptr_t>(handle)); }

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_ai_edgevlm_EdgeVLM_nativeOpen(JNIEnv* env, jclass, jstring dir, jstring vision,
                                                          jboolean verify, jint threads) {
    if (dir == nullptr) {
        throw_java(env, "java/lang/IllegalArgumentException", "EdgeVLM.open needs the export folder");
        return 0;
    }
    const std::string folder = utf8_from_jstring(env, dir);
    const std::string vision_name = vision != nullptr ? utf8_from_jstring(env, vision) : std::string();
    if (env->ExceptionCheck()) return 0;
    edgevlm_open_options options;
    edgevlm_open_options_default(&options);
    options.vision = vision != nullptr ? vision_name.c_str() : nullptr;
    options.verify = verify == JNI_TRUE ? 1 : 0;
    options.threads = threads;
    edgevlm_pipeline* pipeline = nullptr;
    const edgevlm_status status = edgevlm_open(folder.c_str(), &options, &pipeline);
    if (status != EDGEVLM_OK) {
        throw_edgevlm(env, status);
        return 0;
    }
    return static_cast<jlong>(reinterpret_cast<intptr_t>(pipeline));
}

JNIEXPORT jstring JNICALL Java_ai_edgevlm_EdgeVLM_nativeRun(JNIEnv* env, jobject, jlong handle, jintArray argb,
                                                           jbyteArray rgba, jint width, jint height, jstring prompt,
                                                           jint max_new_tokens, jfloat temperature, jfloat top_p,
                                                           jlong seed, jobject callback) {
    if (prompt == nullptr) {
        throw_java(env, "java/lang/IllegalArgumentException", "EdgeVLM.run needs a prompt");
        return nullptr;
    }
    // one image, RGBA8 rows packed
    std::vector<uint8_t> pixels;
    const bool has_image = argb != nullptr || rgba != nullptr;
    if (has_image) {
        if (width <= 0 || height <= 0) {
            throw_java(env, "java/lang/IllegalArgumentException",
                       "image size " + std::to_string(width) + "x" + std::to_string(height) + ": both sides must be >= 1");
            return nullptr;
        }
        const int64_t count = static_cast<int64_t>(width) * height;
        const int64_t given = argb != nullptr ? env->GetArrayLength(argb) : env->GetArrayLength(rgba) / 4;
        if (given < count) {
            throw_java(env, "java/lang/IllegalArgumentException",
                       "the pixel array holds " + std::to_string(given) + " pixels, fewer than " + std::to_string(width) +
                           "x" + std::to_string(height) + ": pass the whole bitmap (" +
                           (argb != nullptr ? "getPixels with stride = width" : "4 bytes per pixel") + ")");
            return nullptr;
        }
        pixels.resize(static_cast<size_t>(count) * 4);
        if (argb != nullptr) {
            // 0xAARRGGBB ints -> R, G, B, A bytes; a critical section: no JNI calls until released
            auto* colors = static_cast<const jint*>(env->GetPrimitiveArrayCritical(argb, nullptr));
            if (colors == nullptr) return nullptr;  // OutOfMemoryError pending
            for (int64_t i = 0; i < count; ++i) {
                const auto c = static_cast<uint32_t>(colors[i]);
                uint8_t* out = &pixels[static_cast<size_t>(i) * 4];
                out[0] = static_cast<uint8_t>(c >> 16);
                out[1] = static_cast<uint8_t>(c >> 8);
                out[2] = static_cast<uint8_t>(c);
                out[3] = static_cast<uint8_t>(c >> 24);
            }
            env->ReleasePrimitiveArrayCritical(argb, const_cast<jint*>(colors), JNI_ABORT);
        } else {
            env->GetByteArrayRegion(rgba, 0, static_cast<jsize>(count * 4), reinterpret_cast<jbyte*>(pixels.data()));
        }
    }
    const std::string question = utf8_from_jstring(env, prompt);
    if (env->ExceptionCheck()) return nullptr;

    edgevlm_image image{pixels.data(), width, height, 0, EDGEVLM_PIXELS_RGBA8};
    edgevlm_run_options options;
    edgevlm_run_options_default(&options);
    options.max_new_tokens = max_new_tokens;
    options.temperature = temperature;
    options.top_p = top_p;
    options.seed = static_cast<uint64_t>(seed);

    Stream stream{env, callback, nullptr};
    if (callback != nullptr) {
        jclass cls = env->GetObjectClass(callback);
        stream.on_text = env->GetMethodID(cls, "onText", "(Ljava/lang/String;)V");
        env->DeleteLocalRef(cls);
        if (stream.on_text == nullptr) return nullptr;  // NoSuchMethodError pending
    }
    char* json = nullptr;
    const edgevlm_status status =
        edgevlm_run(pipeline_of(handle), has_image ? &image : nullptr, has_image ? 1 : 0, question.c_str(), &options,
                    callback != nullptr ? on_text : nullptr, &stream, &json);
    jstring result = nullptr;
    if (env->ExceptionCheck()) {
        // the callback threw: that exception goes to the caller
    } else if (status != EDGEVLM_OK) {
        throw_edgevlm(env, status);
    } else if (json != nullptr) {
        result = jstring_from_utf8(env, json, std::char_traits<char>::length(json));
    }
    edgevlm_free_string(json);
    return result;
}

JNIEXPORT void JNICALL Java_ai_edgevlm_EdgeVLM_nativeClose(JNIEnv*, jobject, jlong handle) {
    edgevlm_close(pipeline_of(handle));
}

}  // extern "C"
