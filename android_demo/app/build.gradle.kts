// The demo app. Before building: `edgevlm bundle EXPORT --platform android --out android_demo/bundle`
// (its own folder: bundle writes a whole folder atomically and never into a project it did not
// write; model files under bundle/app/src/main/assets/edgevlm/, the native runtime under
// bundle/app/src/main/cpp/), and the ExecuTorch / ONNX Runtime paths in ../gradle.properties (README.md).
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

fun setting(name: String): String = (findProperty(name) as String?).orEmpty()

val bundleDir = "../bundle/app/src/main"  // what `edgevlm bundle --out android_demo/bundle` writes
val runtimeDir = "$bundleDir/cpp/edgevlm"  // where the bundle puts runtime/

android {
    namespace = "ai.edgevlm.demo"
    compileSdk = 35
    ndkVersion = "28.2.13676358"  // NDK r28c, as runtime/platforms/android/build.sh expects

    defaultConfig {
        applicationId = "ai.edgevlm.demo"
        minSdk = 29  // build.sh's ANDROID_PLATFORM
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"  // BenchMode.APP_VERSION
        ndk { abiFilters += listOf("arm64-v8a") }  // the only ABI the QNN HTP libraries exist for
        externalNativeBuild {
            cmake {
                // the same configuration as runtime/platforms/android/build.sh
                arguments += listOf(
                    "-DANDROID_STL=c++_shared",
                    "-DEDGEVLM_EXECUTORCH_PACKAGE=ON",
                    "-Dexecutorch_DIR=${setting("edgevlm.executorchDir")}/lib/cmake/ExecuTorch",
                    "-DEDGEVLM_WITH_ORT=ON",
                    "-DONNXRUNTIME_LIB=${setting("edgevlm.onnxruntimeLib")}",
                    "-DEDGEVLM_KERNEL_DIR=${file("$bundleDir/cpp/edgevlm-kernels")}",
                    "-DEDGEVLM_KERNEL_ARCH=armv8.2-a+dotprod+fp16")
                targets += listOf("edgevlm", "edgevlm_jni")
            }
        }
    }

    externalNativeBuild {
        cmake {
            path = file("$runtimeDir/platforms/android/CMakeLists.txt")
            version = "3.31.6"
        }
    }

    // ai.edgevlm.EdgeVLM (EdgeVLM.kt) ships with the runtime's Android shell
    sourceSets["main"].java.srcDir("$runtimeDir/platforms/android")
    // the model files (manifest.json, tokenizer, .pte, QNN context) as the app's assets/edgevlm/
    sourceSets["main"].assets.srcDir("$bundleDir/assets")

    // the runtime maps the .pte and hashes every file: store them, not deflated, in the APK
    androidResources { noCompress += listOf("pte", "onnx", "bin", "json") }

    // extracted to nativeLibraryDir: the HTP's skel library (jniLibs/arm64-v8a/libQnnHtpV75Skel.so) is
    // loaded by the DSP from a real file, not from inside the APK
    packaging { jniLibs { useLegacyPackaging = true } }

    buildTypes {
        release {
            isMinifyEnabled = false  // EdgeVLM's JNI looks up TextCallback.onText and EdgeVLMException by name
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    // ONNX Runtime with the QNN execution provider: libonnxruntime.so for the vision encoder on the HTP
    // (the version runtime/platforms/android/README.md and `edgevlm bundle`'s INTEGRATION.md name)
    implementation("com.microsoft.onnxruntime:onnxruntime-android-qnn:1.29.0")
    // ExecuTorch's Java API only if the app calls it too: the runtime links the ExecuTorch C++ install
    // above, and the AAR's libexecutorch.so must then be the release the .pte was exported with
    // (manifest.json's toolchain.executorch)
    if (setting("edgevlm.executorchAar") == "true") {
        implementation("org.pytorch:executorch-android:${setting("edgevlm.executorchVersion")}")
    }
}
