// What the app reads from an export's manifest.json (as `edgevlm bundle` copied it): the model's name
// and version, the files and hashes the bench JSON reports, and which vision encoders to try in order.
package ai.edgevlm.demo

import java.io.File
import java.security.MessageDigest

/** One way to run the vision encoder: [vision] is what EdgeVLM.open takes (a file name or "pte"). */
data class VisionChoice(val vision: String, val accelerator: String) {
    val onHtp: Boolean get() = accelerator == HTP

    companion object {
        const val HTP = "HTP"
        const val CPU = "CPU"
    }
}

class ModelManifest(val dir: File) {
    private val file = File(dir, "manifest.json")
    private val bytes: ByteArray = try {
        file.readBytes()
    } catch (e: java.io.IOException) {
        throw IllegalStateException("no readable $file: run `edgevlm bundle EXPORT --platform android --out android_demo` " +
                                    "before building the app (${e.message})", e)
    }

    @Suppress("UNCHECKED_CAST")
    private val root: Map<String, Any?> = Json.parse(String(bytes, Charsets.UTF_8)) as? Map<String, Any?>
        ?: throw IllegalStateException("$file is not a JSON object")

    @Suppress("UNCHECKED_CAST")
    private val artifacts: List<Map<String, Any?>> = root.list("artifacts").map { it as Map<String, Any?> }

    val modelId: String = root.obj("model").str("id")
    val modelVersion: String = root.obj("model")["version"].toString()
    val toolchain: Map<String, String> = (root["toolchain"] as? Map<*, *>).orEmpty()
        .entries.associate { (k, v) -> k.toString() to v.toString() }
    val sha256: String = MessageDigest.getInstance("SHA-256").digest(bytes).joinToString("") { "%02x".format(it) }

    /** artifact file -> sha256, for the bench JSON's "artifacts". */
    val artifactHashes: Map<String, String> = artifacts.associate { it.str("file") to it.str("sha256") }

    val decoder: Map<String, Any?> = artifacts.firstOrNull { it["part"] == "decoder" && it["target"] == "executorch" }
        ?: throw IllegalStateException("$file lists no ExecuTorch decoder: export with --recipe android-sd8g3")

    /**
     * The encoders to try, best first: QNN EPContext models (the HTP), then ONNX models on the CPU,
     * then the decoder .pte's own vision_encoder (XNNPACK on the CPU).
     */
    val visionChoices: List<VisionChoice> = buildList {
        val vision = artifacts.filter { it["part"] == "vision" }
        vision.filter { it["target"] == "qnn" }.forEach { add(VisionChoice(it.str("file"), VisionChoice.HTP)) }
        vision.filter { it["target"] == "ort" }.forEach { add(VisionChoice(it.str("file"), VisionChoice.CPU)) }
        if ((decoder["methods"] as? List<*>)?.contains("vision_encoder") == true) add(VisionChoice("pte", VisionChoice.CPU))
        if (isEmpty()) throw IllegalStateException("$file lists no vision encoder this app runs (qnn, ort or the .pte's)")
    }

    /** The manifest entry behind [choice]; null for a file the manifest does not list. */
    fun artifactFor(choice: VisionChoice): Map<String, Any?>? =
        if (choice.vision == "pte") decoder else artifacts.firstOrNull { it["file"] == choice.vision }
}

/** What opened: the model, the encoder that runs, and why the ones before it did not (empty: none failed). */
class Opened<T>(val model: T, val choice: VisionChoice, val skipped: List<Pair<VisionChoice, String>>) {
    /** The UI's indicator: "vision: HTP", or "vision: CPU fallback (why)" when the HTP one failed. */
    val indicator: String
        get() = when {
            choice.onHtp -> "vision: HTP"
            skipped.any { it.first.onHtp } -> "vision: CPU fallback (${skipped.first { it.first.onHtp }.second})"
            else -> "vision: CPU (this export has no HTP encoder)"
        }
}

/** Opens with each choice in turn until one works; [open] is EdgeVLM.open in the app. */
fun <T> openWithFallback(choices: List<VisionChoice>, open: (VisionChoice) -> T): Opened<T> {
    val skipped = mutableListOf<Pair<VisionChoice, String>>()
    for (choice in choices) {
        try {
            return Opened(open(choice), choice, skipped)
        } catch (e: RuntimeException) {
            skipped += choice to (e.message ?: e.javaClass.simpleName)
        }
    }
    throw IllegalStateException("no vision encoder opened: " +
                                skipped.joinToString("; ") { (c, why) -> "${c.vision} (${c.accelerator}): $why" })
}
