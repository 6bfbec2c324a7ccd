// Drives ai.edgevlm.EdgeVLM (runtime/platforms/android/EdgeVLM.kt) through the real JNI bridge and
// the real libedgevlm (the C API over the whole pipeline) on the host JVM, on an exported folder;
// tests/test_runtime_platforms.py runs it and compares the printed results with edgevlm-runner's.
//   JniHarness FOLDER ARGB_FILE WIDTH HEIGHT PROMPT
// ARGB_FILE: big-endian 0xAARRGGBB ints, what Bitmap.getPixels returns. Prints `ARGB <json>`,
// `RGBA <json>` and `STREAMED <text>` lines, one line per failed check, and exits 1 if any failed.
package edgevlm.test

import ai.edgevlm.EdgeVLM
import ai.edgevlm.EdgeVLMException
import ai.edgevlm.RunOptions
import ai.edgevlm.TextCallback
import java.io.DataInputStream
import java.io.File
import kotlin.system.exitProcess

var failures = 0
var checks = 0

fun check(what: String, ok: Boolean, detail: () -> String = { "" }) {
    checks++
    if (!ok) {
        failures++
        println("FAIL: $what ${detail()}")
    }
}

inline fun <reified T : Throwable> expect(what: String, body: () -> Unit): T? {
    try {
        body()
    } catch (e: Throwable) {
        check(what, e is T) { "threw ${e::class.java.name}: ${e.message}" }
        return e as? T
    }
    check(what, false) { "did not throw" }
    return null
}

fun main(args: Array<String>) {
    val (folder, argbFile) = args
    val width = args[2].toInt()
    val height = args[3].toInt()
    val prompt = args[4]
    val argb = DataInputStream(File(argbFile).inputStream().buffered()).use { input -> IntArray(width * height) { input.readInt() } }

    val missing = expect<EdgeVLMException>("open of a folder without a manifest throws") { EdgeVLM.open("$folder-missing") }
    check("its status is MANIFEST", missing?.status == EdgeVLMException.MANIFEST) { "${missing?.status}" }
    check("it carries edgevlm_last_error", missing?.message?.contains("manifest.json") == true) { "${missing?.message}" }

    val vlm = EdgeVLM.open(folder)
    val options = RunOptions(maxNewTokens = 8)
    val pieces = StringBuilder()
    println("ARGB " + vlm.run(argb, width, height, prompt, options, TextCallback { pieces.append(it) }))
    println("STREAMED " + pieces.toString().replace("\n", "\\n"))
    // the same pixels as RGBA bytes (Bitmap.copyPixelsToBuffer's order)
    val rgba = ByteArray(4 * width * height)
    for (i in argb.indices) {
        rgba[4 * i] = (argb[i] shr 16).toByte()
        rgba[4 * i + 1] = (argb[i] shr 8).toByte()
        rgba[4 * i + 2] = argb[i].toByte()
        rgba[4 * i + 3] = (argb[i] ushr 24).toByte()
    }
    println("RGBA " + vlm.run(rgba, width, height, prompt, options))

    val long = expect<EdgeVLMException>("a prompt past the cache throws") { vlm.run("word ".repeat(4000)) }
    check("its status is PROMPT", long?.status == EdgeVLMException.PROMPT) { "${long?.status}" }
    check("its message names the cache", long?.message?.contains("cache") == true) { "${long?.message}" }
    expect<IllegalStateException>("a throwing callback's exception reaches the caller") {
        vlm.run(argb, width, height, prompt, options, TextCallback { throw IllegalStateException("stop") })
    }
    expect<IllegalArgumentException>("a pixel array shorter than width x height is refused") {
        vlm.run(intArrayOf(1, 2, 3), 2, 2, "x")
    }
    expect<IllegalArgumentException>("an RGBA array shorter than 4 x width x height is refused") {
        vlm.run(ByteArray(15), 2, 2, "x")
    }
    expect<IllegalArgumentException>("a zero-sized image is refused") { vlm.run(IntArray(0), 0, 3, "x") }

    vlm.close()
    vlm.close()  // a second close does nothing
    expect<IllegalStateException>("run after close is refused") { vlm.run("x") }

    println("jni harness: $checks checks, $failures failed")
    exitProcess(if (failures == 0) 0 else 1)
}
