// The numbers of one answer, read from the runtime's result (urn:edgevlm:runner-result:1, whose
// "stats" pipeline.cpp RunStats::to_json writes), and the one line the app shows under the answer.
package ai.edgevlm.demo

import java.util.Locale

data class RunStats(
    val text: String,
    val visionMs: Double,
    val visionRuntime: String,
    val promptTokens: Int,
    val generatedTokens: Int,
    val prefillMs: Double,
    val prefillTokensPerS: Double,
    val ttftMs: Double,
    val decodeMs: Double,
    val decodeTokensPerS: Double,
) {
    /** Where the encoder ran, from the runtime's own description: "onnxruntime QNN (file)" is the HTP
     *  (its session refuses CPU fallback), "onnxruntime cpu (...)" / "executorch vision_encoder (...)" the CPU. */
    val accelerator: String
        get() = if (visionRuntime.startsWith("onnxruntime QNN ")) VisionChoice.HTP else VisionChoice.CPU

    companion object {
        fun parse(resultJson: String): RunStats {
            @Suppress("UNCHECKED_CAST")
            val root = Json.parse(resultJson) as? Map<String, Any?>
                ?: throw IllegalArgumentException("the runtime's result is not a JSON object")
            require(root["schema"] == "urn:edgevlm:runner-result:1") { "unknown result schema ${root["schema"]}" }
            val s = root.obj("stats")
            return RunStats(
                text = root.str("text"),
                visionMs = s.num("vision_ms"),
                visionRuntime = s.str("vision_runtime"),
                promptTokens = s.num("prompt_tokens").toInt(),
                generatedTokens = s.num("generated_tokens").toInt(),
                prefillMs = s.num("prefill_ms"),
                prefillTokensPerS = s.num("prefill_tokens_per_s"),
                ttftMs = s.num("time_to_first_token_ms"),
                decodeMs = s.num("decode_ms"),
                decodeTokensPerS = s.num("decode_tokens_per_s"),
            )
        }
    }
}

object StatsFormatter {
    /** e.g. "vision 812 ms (HTP) · prefill 96 tok/s · decode 18.4 tok/s · first token 1450 ms". */
    fun line(s: RunStats): String = String.format(
        Locale.ROOT, "vision %.0f ms (%s) · prefill %.0f tok/s · decode %.1f tok/s · first token %.0f ms",
        s.visionMs, s.accelerator, s.prefillTokensPerS, s.decodeTokensPerS, s.ttftMs)
}
