// Stats as the app shows them. Plain Swift so that it stays apart from the views; the vision runtime
// prefixes matched here are what the runtime's VisionEncoder::describe() returns
// (vision_coreml.mm, vision_pte.cpp, vision_ort.cpp; tests/test_ios_demo.py keeps them in step).
import Foundation

enum StatsFormatter {
    /// iPhone / iPad have no powermetrics (macOS only, and it needs root): power is never estimated.
    static let powerNote = "power: not measured (iOS has no powermetrics)"

    /// Where the vision encoder ran, from stats.vision_runtime ("coreml cpu-and-ne (path)", ...).
    /// For Core ML this is the compute units the model was allowed: Core ML itself places each layer
    /// and does not report where it ran.
    static func visionUnit(_ runtime: String) -> String {
        let words = runtime.split(separator: " ").map(String.init)
        guard let engine = words.first else { return "unknown" }
        let detail = words.count > 1 ? words[1] : ""
        switch engine {
        case "coreml":
            switch detail {
            case "cpu-and-ne": return "Neural Engine (Core ML, CPU + NE)"
            case "all": return "Neural Engine / GPU (Core ML, all units)"
            case "cpu-and-gpu": return "GPU (Core ML, CPU + GPU)"
            case "cpu-only": return "CPU (Core ML)"
            default: return "Core ML \(detail)"
            }
        case "executorch": return "CPU (ExecuTorch .pte)"
        case "onnxruntime": return detail == "cpu" ? "CPU (ONNX Runtime)" : "ONNX Runtime \(detail)"
        case "none": return "no image"
        default: return runtime
        }
    }

    static func line(_ stats: RunStats) -> String {
        var parts: [String] = []
        if stats.visionSlices > 0 {
            parts.append("vision \(ms(stats.visionMs)) on \(visionUnit(stats.visionRuntime))")
        }
        parts.append("first token \(ms(stats.timeToFirstTokenMs))")
        parts.append("prefill \(rate(stats.prefillTokensPerS))")
        parts.append("decode \(rate(stats.decodeTokensPerS)) (\(stats.generatedTokens) tokens)")
        return parts.joined(separator: " · ")
    }

    static func ms(_ value: Double) -> String {
        value >= 1000 ? String(format: "%.2f s", value / 1000) : String(format: "%.0f ms", value)
    }

    static func rate(_ tokensPerSecond: Double) -> String { String(format: "%.1f tok/s", tokensPerSecond) }
}
