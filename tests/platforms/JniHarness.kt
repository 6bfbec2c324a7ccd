// Drives ai.edgevlm.EdgeVLM (runtime/platforms/android/EdgeVLM.kt) through the real JNI bridge
// linked against c_api_stub.cpp, on the host JVM; tests/test_runtime_platforms.py runs it.
// Prints one line per failed check and exits 1 if any failed.
package edgevlm.test

import ai.edgevlm.EdgeVLM
import ai.edgevlm.EdgeVLMException
import ai.edgevlm.RunOptions
import ai.edgevlm.TextCallback
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

fun main() {
    val missing = expect<EdgeVLMException>("open of a folder without a manifest throws") { EdgeVLM.open("missing") }
    check("its status is MANIFEST", missing?.status == EdgeVLMException.MANIFEST) { "${missing?.status}" }
    check("it carries edgevlm_last_error", missing?.message?.contains("export the folder first") == true)

    val vlm = EdgeVLM.open("dir-é🙂", vision = "vision.onnx", verify = false, threads = 3)
    val pieces = StringBuilder()
    val prompt = "What is in 🙂 picture? ü"
    // 0xAARRGGBB: a half-transparent (0x80) and an opaque pixel
    val argb = intArrayOf(0x80112233.toInt(), 0xFF445566.toInt())
    val json = vlm.run(argb, 2, 1, prompt, RunOptions(maxNewTokens = 5, temperature = 0.5f, topP = 0.9f, seed = 7L),
                       TextCallback { pieces.append(it) })
    check("folder path arrives as UTF-8", json.contains("\"dir\":\"dir-é🙂\"")) { json }
    check("open options arrive", json.contains("\"vision\":\"vision.onnx\",\"verify\":0,\"threads\":3")) { json }
    check("ARGB ints become RGBA bytes", json.contains("\"pixels\":\"11223380445566ff\"")) { json }
    check("one RGBA8 image of 2x1", json.contains("\"images\":1,\"size\":\"2x1\",\"format\":1")) { json }
    check("run options arrive", json.contains("\"max_new_tokens\":5,\"temperature\":0.5,\"top_p\":0.9,\"seed\":7")) { json }
    check("prompt arrives as UTF-8", json.contains("\"prompt\":\"$prompt\"")) { json }
    check("streamed text comes back as UTF-16", pieces.toString() == "$prompt|🙂é") { pieces.toString() }

    val rgba = byteArrayOf(1, 2, 3, 4, -1, -2, -3, -4)
    val fromBytes = vlm.run(rgba, 1, 2, "x")
    check("RGBA bytes pass unchanged", fromBytes.contains("\"pixels\":\"01020304fffefdfc\"")) { fromBytes }
    check("no callback is fine", fromBytes.contains("\"size\":\"1x2\"")) { fromBytes }

    val textOnly = vlm.run("no image")
    check("a prompt alone sends no image", textOnly.contains("\"images\":0")) { textOnly }

    val failed = expect<EdgeVLMException>("a failed run throws") { vlm.run("fail") }
    check("its status is PROMPT", failed?.status == EdgeVLMException.PROMPT) { "${failed?.status}" }
    check("its message is the C API's", failed?.message == "the prompt is past the cache") { "${failed?.message}" }

    expect<IllegalStateException>("a throwing callback's exception reaches the caller") {
        vlm.run("x", RunOptions(), TextCallback { throw IllegalStateException("stop") })
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
