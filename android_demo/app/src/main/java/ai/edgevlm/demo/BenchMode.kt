// The benchmark mode (`adb shell am start -n ai.edgevlm.demo/.MainActivity --es mode bench`): timed
// runs over one fixed image, written as edgevlm.bench/2 JSON (device_tests/schemas/bench-v2.schema.json)
// into the app's files folder, where device_tests/devices/android_app.py pulls it with run-as.
// Plain Kotlin: the activity hands in the device facts and a function that runs the model once.
package ai.edgevlm.demo

import java.io.File
import java.time.Instant

data class BenchOptions(val runs: Int, val warmup: Int, val maxNewTokens: Int, val prompt: String) {
    companion object {
        const val DEFAULT_PROMPT = "Describe the picture in one short sentence."

        /** From the intent's extras (`--ei runs 5 --ei warmup 1 --ei max_new_tokens 32 --es prompt ...`). */
        fun from(extra: (String) -> String?): BenchOptions {
            fun int(key: String, default: Int, min: Int): Int {
                val text = extra(key) ?: return default
                val value = text.toIntOrNull() ?: throw IllegalArgumentException("bench extra $key=$text is not a number")
                require(value >= min) { "bench extra $key=$value: give at least $min" }
                return value
            }
            return BenchOptions(int("runs", 5, 1), int("warmup", 1, 0), int("max_new_tokens", 32, 1),
                                extra("prompt") ?: DEFAULT_PROMPT)
        }
    }
}

/** What android.os.Build says (the activity fills it); null where the OS does not say. */
data class BenchDevice(val model: String?, val soc: String?, val os: String?)

object BenchMode {
    const val SCHEMA = "edgevlm.bench/2"
    const val RESULT_FILE = "edgevlm-bench.json"
    const val ERROR_FILE = "edgevlm-bench.error"
    const val IMAGE_SIZE = 448
    const val APP_VERSION = "0.1.0"

    /** The bench image: a fixed colour gradient, so every phone encodes the same pixels. */
    fun syntheticImage(size: Int = IMAGE_SIZE): IntArray = IntArray(size * size) { i ->
        val x = i % size
        val y = i / size
        (0xFF shl 24) or ((x * 255 / (size - 1)) shl 16) or ((y * 255 / (size - 1)) shl 8) or ((x + y) and 0xFF)
    }

    /** warmup + runs calls of [runOnce] (a runner-result JSON each) -> the bench document. */
    fun run(manifest: ModelManifest, opened: Opened<*>, loadMs: Double, options: BenchOptions, device: BenchDevice,
            runOnce: () -> String): Map<String, Any?> {
        val all = (0 until options.warmup + options.runs).map { RunStats.parse(runOnce()) }
        val warm = all.drop(options.warmup)
        val peak = peakRssBytes()
        val visionArtifact = manifest.artifactFor(opened.choice)
            ?: throw IllegalStateException("${opened.choice.vision} opened but ${manifest.dir}/manifest.json does not list it")
        val results = mutableListOf<Map<String, Any?>>()
        for ((choice, why) in opened.skipped) {  // the encoders that did not open, HTP first: the reason is the finding
            val artifact = manifest.artifactFor(choice)
            results += linkedMapOf("part" to "vision", "runtime" to (artifact?.get("runtime") ?: "unknown").toString(),
                                   "status" to "not run", "reason" to why, "artifact" to choice.vision,
                                   "sha256" to artifact?.get("sha256"))
        }
        results += linkedMapOf(
            "part" to "vision", "runtime" to all[0].visionRuntime, "status" to "ok",
            "artifact" to visionArtifact.str("file"), "sha256" to visionArtifact.str("sha256"), "emulated" to false,
            "load_ms" to loadMs, "cold_ms" to all[0].visionMs,
            "metrics" to metrics(warm.map { it.visionMs }, options.warmup), "peak_memory_bytes" to peak)
        val prefill = linkedMapOf("median_ms" to median(warm.map { it.prefillMs }),
                                  "tokens_per_s" to median(warm.map { it.prefillTokensPerS }),
                                  "ttft_ms" to median(warm.map { it.ttftMs }))
        val perToken = warm.filter { it.decodeTokensPerS > 0 }
        val decode: Any = if (perToken.isEmpty()) unavailable("every run stopped before a second token: no decode step timed")
            else linkedMapOf("median_ms" to median(perToken.map { 1000.0 / it.decodeTokensPerS }),
                             "tokens_per_s" to median(perToken.map { it.decodeTokensPerS }))
        val context = warm[0].promptTokens.toString()  // the prompt's length: where decode starts
        results += linkedMapOf(
            "part" to "decoder", "runtime" to manifest.decoder["runtime"].toString(), "status" to "ok",
            "artifact" to manifest.decoder.str("file"), "sha256" to manifest.decoder.str("sha256"), "emulated" to false,
            "load_ms" to loadMs,
            "decoder" to linkedMapOf("prefill" to mapOf(context to prefill), "decode" to mapOf(context to decode),
                                     "ttft_ms" to median(warm.map { it.ttftMs })),
            "peak_memory_bytes" to peak)
        val thermal = unavailable("the app does not read thermal zones; `edgevlm device-bench --device adb` records them")
        return linkedMapOf(
            "schema" to SCHEMA, "kind" to "device", "created_utc" to Instant.now().toString(),
            "device" to linkedMapOf(
                "kind" to "adb", "spec" to "adb (android_demo bench mode)", "emulated" to false,
                "model" to text(device.model, "android.os.Build.MODEL is empty"),
                "soc" to text(device.soc, "android.os.Build.SOC_MODEL needs Android 12 (API 31)"),
                "os" to text(device.os, "android.os.Build.VERSION.RELEASE is empty"),
                "cpu" to unavailable("the app does not read /proc/cpuinfo; `edgevlm device-bench --device adb` records it"),
                "thermal_before" to thermal, "thermal_after" to thermal),
            "artifacts" to linkedMapOf("manifest_sha256" to manifest.sha256, "files" to manifest.artifactHashes),
            "runtime_versions" to linkedMapOf("android_demo" to APP_VERSION) + manifest.toolchain.mapKeys { "export ${it.key}" },
            "model" to linkedMapOf("id" to manifest.modelId, "version" to manifest.modelVersion),
            "input" to linkedMapOf("image" to "synthetic ${IMAGE_SIZE}x$IMAGE_SIZE gradient", "prompt" to options.prompt,
                                   "max_new_tokens" to options.maxNewTokens, "vision" to opened.indicator,
                                   "answer" to warm.last().text),
            "results" to results,
            "power" to unavailable("the app does not sample power; `edgevlm device-bench --device adb --power` does"))
    }

    /** Writes [text] to [file] through a temporary name, so a reader never sees half a file. */
    fun writeAtomically(file: File, text: String) {
        val tmp = File(file.parentFile, file.name + ".tmp")
        tmp.writeText(text)
        if (!tmp.renameTo(file)) throw java.io.IOException("could not rename $tmp to $file")
    }

    /** The process's peak resident set (VmHWM in /proc/self/status, Linux and Android alike). */
    fun peakRssBytes(status: File = File("/proc/self/status")): Any {
        val line = try { status.readLines().firstOrNull { it.startsWith("VmHWM:") } } catch (e: java.io.IOException) { null }
            ?: return unavailable("$status has no VmHWM line")
        return line.removePrefix("VmHWM:").trim().removeSuffix("kB").trim().toLong() * 1024
    }

    fun metrics(samples: List<Double>, warmup: Int): Map<String, Any?> {
        val sorted = samples.sorted()
        val mean = samples.average()
        // as edgevlm/stats.py: nearest-rank p90 (numpy's "nearest", ties to even) and the sample std
        val p90 = sorted[Math.rint(0.9 * (sorted.size - 1)).toInt()]
        val std = if (samples.size > 1) Math.sqrt(samples.sumOf { (it - mean) * (it - mean) } / (samples.size - 1)) else 0.0
        return linkedMapOf("runs" to samples.size, "warmup" to warmup, "median_ms" to median(samples), "p90_ms" to p90,
                           "min_ms" to sorted.first(), "max_ms" to sorted.last(), "mean_ms" to mean, "std_ms" to std)
    }

    fun median(samples: List<Double>): Double {
        val s = samples.sorted()
        return if (s.size % 2 == 1) s[s.size / 2] else (s[s.size / 2 - 1] + s[s.size / 2]) / 2
    }

    private fun unavailable(reason: String) = mapOf("unavailable" to reason)

    private fun text(value: String?, reason: String): Any = if (value.isNullOrBlank()) unavailable(reason) else value
}
