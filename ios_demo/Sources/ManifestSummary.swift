// What the app shows and chooses from manifest.json (export/schemas/manifest.schema.json) before the
// runtime opens it; the runtime reads the manifest again itself and checks every file's sha256.
import Foundation

struct ManifestSummary {
    struct VisionArtifact {
        let file: String
        let target: String
        let computeUnits: String?
    }

    let modelVersion: String
    let recipe: String?
    let decoder: String?
    let executorch: String?
    let vision: [VisionArtifact]

    /// The folder `edgevlm bundle EXPORT --platform ios --out ios_demo/Model` puts the model files in
    /// (project.yml copies it into the app as it is).
    static let resourceFolder = "EdgeVLMResources"

    static func load(folder: URL) throws -> ManifestSummary {
        let data = try Data(contentsOf: folder.appendingPathComponent("manifest.json"))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: folder.path])
        }
        let artifacts = root["artifacts"] as? [[String: Any]] ?? []
        let vision = artifacts.filter { $0["part"] as? String == "vision" }.compactMap { entry -> VisionArtifact? in
            guard let file = entry["file"] as? String, let target = entry["target"] as? String else { return nil }
            let details = entry["details"] as? [String: Any]
            return VisionArtifact(file: file, target: target, computeUnits: details?["compute_units"] as? String)
        }
        let decoder = artifacts.first { $0["part"] as? String == "decoder" && $0["target"] as? String == "executorch" }
        return ManifestSummary(
            modelVersion: (root["model"] as? [String: Any])?["version"] as? String ?? "?",
            recipe: (root["recipe"] as? [String: Any])?["name"] as? String,
            decoder: decoder?["file"] as? String,
            executorch: (root["toolchain"] as? [String: Any])?["executorch"] as? String,
            vision: vision)
    }

    /// The Core ML package when there is one (a missing Core ML build then fails loudly instead of
    /// falling back to the CPU), else the runtime's own choice.
    var visionChoice: String { vision.first { $0.target == "coreml" }?.file ?? "auto" }

    var line: String {
        var parts = ["MiniCPM-V \(modelVersion)"]
        if let recipe { parts.append("recipe \(recipe)") }
        parts.append("vision \(visionChoice)")
        if let decoder { parts.append("decoder \(decoder)") }
        return parts.joined(separator: " · ")
    }
}
