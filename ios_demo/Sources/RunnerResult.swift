// The C API's result JSON (urn:edgevlm:runner-result:1, runtime/src/pipeline.cpp RunResult::to_json) and
// the one-line stats the app shows. Plain Foundation, no UI: tests/test_ios_demo.py checks every key
// below against the keys pipeline.cpp writes.
import Foundation

struct RunnerResult: Decodable {
    static let schemaURN = "urn:edgevlm:runner-result:1"

    let schema: String
    let text: String
    let tokens: [Int]
    let stats: RunStats

    enum CodingKeys: String, CodingKey {
        case schema = "schema"
        case text = "text"
        case tokens = "tokens"
        case stats = "stats"
    }

    /// Decodes a result, refusing another schema (a runtime newer than this app).
    static func decode(_ json: String) throws -> RunnerResult {
        let result = try JSONDecoder().decode(RunnerResult.self, from: Data(json.utf8))
        guard result.schema == schemaURN else {
            throw DecodingError.dataCorrupted(.init(codingPath: [CodingKeys.schema],
                                                    debugDescription: "schema \(result.schema), expected \(schemaURN)"))
        }
        return result
    }
}

/// RunStats::to_json's fields the app reads (milliseconds, tokens per second).
struct RunStats: Decodable {
    let modelLoadMs: Double
    let visionMs: Double
    let visionSlices: Int
    let visionRuntime: String
    let promptTokens: Int
    let generatedTokens: Int
    let prefillTokensPerS: Double
    let timeToFirstTokenMs: Double
    let decodeTokensPerS: Double
    let stoppedBy: String

    enum CodingKeys: String, CodingKey {
        case modelLoadMs = "model_load_ms"
        case visionMs = "vision_ms"
        case visionSlices = "vision_slices"
        case visionRuntime = "vision_runtime"
        case promptTokens = "prompt_tokens"
        case generatedTokens = "generated_tokens"
        case prefillTokensPerS = "prefill_tokens_per_s"
        case timeToFirstTokenMs = "time_to_first_token_ms"
        case decodeTokensPerS = "decode_tokens_per_s"
        case stoppedBy = "stopped_by"
    }
}
