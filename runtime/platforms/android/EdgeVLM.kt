// ai.edgevlm.EdgeVLM: edgevlm's native runtime for Android apps, through libedgevlm_jni.so
// (edgevlm_jni.cpp) over the C API (runtime/include/edgevlm/c_api.h). Plain Kotlin (no android.*
// imports) so that it compiles anywhere; an app turns a Bitmap into pixels as shown on run().
package ai.edgevlm

/** Receives generated text as it comes, whole characters only, on the thread that called run. */
fun interface TextCallback {
    fun onText(text: String)
}

/** A failed edgevlm call. [status] is the C API's edgevlm_status; the message says what went wrong and the fix. */
class EdgeVLMException(val status: Int, message: String) : RuntimeException(message) {
    companion object {
        const val ARGUMENT = 1
        const val MANIFEST = 2
        const val IMAGE = 3
        const val PROMPT = 4
        const val RUNTIME = 5
    }
}

/** Generation settings; the defaults are the C API's (greedy, 32 new tokens). */
data class RunOptions(
    val maxNewTokens: Int = 32,
    val temperature: Float = 0f,
    val topP: Float = 1f,
    val seed: Long = 0L,
)

/**
 * One pipeline over an `edgevlm export` folder (manifest.json + artifacts, checked by sha256 when
 * opened). Not thread-safe in C, so every call here is synchronized; close() it when done.
 */
class EdgeVLM private constructor(private var handle: Long) : AutoCloseable {

    /**
     * One image as ARGB_8888 ints, as `bitmap.getPixels(pixels, 0, width, 0, 0, width, height)`
     * returns them (non-premultiplied); alpha is dropped. Returns the result as JSON
     * (urn:edgevlm:runner-result:1: "text", "tokens", "stats").
     */
    @Synchronized
    @JvmOverloads
    fun run(argb: IntArray, width: Int, height: Int, prompt: String, options: RunOptions = RunOptions(),
            callback: TextCallback? = null): String =
        nativeRun(open(), argb, null, width, height, prompt, options.maxNewTokens, options.temperature,
                  options.topP, options.seed, callback)

    /**
     * One image as RGBA bytes, 4 per pixel, rows packed (what `bitmap.copyPixelsToBuffer` writes for
     * ARGB_8888; those are alpha-premultiplied, which matters only for transparent pixels).
     */
    @Synchronized
    @JvmOverloads
    fun run(rgba: ByteArray, width: Int, height: Int, prompt: String, options: RunOptions = RunOptions(),
            callback: TextCallback? = null): String =
        nativeRun(open(), null, rgba, width, height, prompt, options.maxNewTokens, options.temperature,
                  options.topP, options.seed, callback)

    /** A prompt without an image. */
    @Synchronized
    @JvmOverloads
    fun run(prompt: String, options: RunOptions = RunOptions(), callback: TextCallback? = null): String =
        nativeRun(open(), null, null, 0, 0, prompt, options.maxNewTokens, options.temperature, options.topP,
                  options.seed, callback)

    @Synchronized
    override fun close() {
        if (handle != 0L) {
            nativeClose(handle)
            handle = 0L
        }
    }

    private fun open(): Long {
        check(handle != 0L) { "this EdgeVLM was closed: open another with EdgeVLM.open(dir)" }
        return handle
    }

    private external fun nativeRun(handle: Long, argb: IntArray?, rgba: ByteArray?, width: Int, height: Int,
                                   prompt: String, maxNewTokens: Int, temperature: Float, topP: Float, seed: Long,
                                   callback: TextCallback?): String

    private external fun nativeClose(handle: Long)

    companion object {
        init {
            System.loadLibrary("edgevlm_jni")  // pulls in libedgevlm.so and libc++_shared.so beside it
        }

        /**
         * Opens the export folder [dir]. [vision]: null or "auto" (the manifest's preferred runnable
         * artifact), "pte", or a vision artifact's file name (e.g. the QNN EPContext .onnx);
         * [verify]: check every loaded file's sha256; [threads]: ExecuTorch threadpool size, 0 keeps
         * its default.
         */
        @JvmStatic
        @JvmOverloads
        fun open(dir: String, vision: String? = null, verify: Boolean = true, threads: Int = 0): EdgeVLM =
            EdgeVLM(nativeOpen(dir, vision, verify, threads))

        @JvmStatic
        private external fun nativeOpen(dir: String, vision: String?, verify: Boolean, threads: Int): Long
    }
}
