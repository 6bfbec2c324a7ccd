// Runs android_demo's non-UI logic on the host JVM over the real runtime (EdgeVLM.kt -> JNI ->
// libedgevlm): manifest reading, the HTP -> CPU fallback, streaming, the stats line and bench mode.
// usage: AndroidDemoHarness EXPORT_DIR OUT_JSON; prints KEY value lines for tests/test_android_demo.py.
package edgevlm.test

import ai.edgevlm.EdgeVLM
import ai.edgevlm.RunOptions
import ai.edgevlm.TextCallback
import ai.edgevlm.demo.BenchDevice
import ai.edgevlm.demo.BenchMode
import ai.edgevlm.demo.BenchOptions
import ai.edgevlm.demo.Json
import ai.edgevlm.demo.ModelManifest
import ai.edgevlm.demo.RunStats
import ai.edgevlm.demo.StatsFormatter
import ai.edgevlm.demo.VisionChoice
import ai.edgevlm.demo.openWithFallback
import java.io.File

fun main(args: Array<String>) {
    val dir = File(args[0])
    val manifest = ModelManifest(dir)
    println("CHOICES " + manifest.visionChoices.joinToString(",") { "${it.vision}=${it.accelerator}" })
    // an HTP encoder first, as a phone export lists it; this host has no such file, so the real
    // EdgeVLM.open refuses it and the app's fallback must land on the export's CPU encoder
    val choices = listOf(VisionChoice("absent.qnn-htp.onnx", VisionChoice.HTP)) + manifest.visionChoices
    val start = System.nanoTime()
    val opened = openWithFallback(choices) { EdgeVLM.open(dir.path, it.vision) }
    val loadMs = (System.nanoTime() - start) / 1e6
    println("INDICATOR ${opened.indicator}")
    opened.model.use { model ->
        val size = BenchMode.IMAGE_SIZE
        val pixels = BenchMode.syntheticImage()
        val streamed = StringBuilder()
        val result = model.run(pixels, size, size, "What colours do you see?", RunOptions(maxNewTokens = 8),
                               TextCallback { streamed.append(it) })
        val stats = RunStats.parse(result)
        println("STREAMED ${streamed.toString().replace("\n", "\\n")}")
        println("TEXT ${stats.text.replace("\n", "\\n")}")
        println("STATS ${StatsFormatter.line(stats)}")
        println("RESULT $result")

        val options = BenchOptions.from(mapOf("runs" to "3", "warmup" to "1", "max_new_tokens" to "6")::get)
        val device = BenchDevice(model = "host JVM", soc = null, os = System.getProperty("os.name"))
        val document = BenchMode.run(manifest, opened, loadMs, options, device) {
            model.run(pixels, size, size, options.prompt, RunOptions(maxNewTokens = options.maxNewTokens))
        }
        BenchMode.writeAtomically(File(args[1]), Json.write(document))
        println("BENCH ${args[1]}")
    }
    try {
        BenchOptions.from(mapOf("runs" to "five")::get)
        println("OPTIONS accepted runs=five")
    } catch (e: IllegalArgumentException) {
        println("OPTIONS ${e.message}")
    }
}
