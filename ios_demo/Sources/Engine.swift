// The one pipeline, opened on first use off the main thread: opening hashes every file against the
// manifest and, the first time, compiles the .mlpackage (seconds to minutes).
import CoreGraphics
import Foundation

/// EdgeVLM serialises its calls with a lock, so one instance may be used from any task.
final class Engine: @unchecked Sendable {
    private let folder: URL
    private let vision: String
    private let lock = NSLock()
    private var opened: EdgeVLM?

    init(folder: URL, vision: String) {
        self.folder = folder
        self.vision = vision
    }

    func pipeline() throws -> EdgeVLM {
        lock.lock()
        defer { lock.unlock() }
        if let opened { return opened }
        let vlm = try EdgeVLM(artifacts: folder, vision: vision)
        opened = vlm
        return vlm
    }

    /// Blocks until generation ends; each piece of text goes to onText as it is generated.
    func answer(image: CGImage?, question: String, maxNewTokens: Int,
                onText: @escaping (String) -> Void) throws -> EdgeVLMResult {
        var options = EdgeVLMRunOptions()
        options.maxNewTokens = maxNewTokens
        return try pipeline().run(images: image.map { [$0] } ?? [], prompt: question, options: options,
                                  onText: onText)
    }
}
