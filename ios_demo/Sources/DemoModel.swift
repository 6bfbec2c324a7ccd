// The screen's state: runs a question on a background task and streams the answer to the main actor.
import CoreGraphics
import Foundation

@MainActor
final class DemoModel: ObservableObject {
    @Published var answer = ""
    @Published var stats = ""
    @Published var message = ""
    @Published private(set) var running = false
    let summary: ManifestSummary?
    private let engine: Engine?

    init(bundle: Bundle = .main) {
        guard let folder = bundle.url(forResource: ManifestSummary.resourceFolder, withExtension: nil) else {
            summary = nil
            engine = nil
            message = "No \(ManifestSummary.resourceFolder) in the app: run `edgevlm bundle EXPORT --platform ios "
                + "--out ios_demo/Model` and regenerate the project (README.md)."
            return
        }
        do {
            let summary = try ManifestSummary.load(folder: folder)
            self.summary = summary
            engine = Engine(folder: folder, vision: summary.visionChoice)
        } catch {
            summary = nil
            engine = nil
            message = "\(ManifestSummary.resourceFolder)/manifest.json: \(error.localizedDescription)"
        }
    }

    func ask(image: CGImage?, question: String, maxNewTokens: Int = 128) {
        guard let engine, !running else { return }
        running = true
        answer = ""
        stats = ""
        message = ""
        // AsyncStream keeps the pieces in order (separate main-actor tasks would not)
        let (pieces, sink) = AsyncStream.makeStream(of: String.self)
        let work = Task.detached(priority: .userInitiated) { () throws -> EdgeVLMResult in
            defer { sink.finish() }
            return try engine.answer(image: image, question: question, maxNewTokens: maxNewTokens) { sink.yield($0) }
        }
        Task {
            for await piece in pieces { answer += piece }
            do {
                let result = try await work.value
                stats = StatsFormatter.line(try RunnerResult.decode(result.json).stats)
            } catch {
                message = "\(error)"
            }
            running = false
        }
    }
}
