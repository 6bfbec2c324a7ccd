// Pick a photo, ask a question, watch the answer stream in, then read the stats.
import PhotosUI
import SwiftUI

struct ContentView: View {
    @StateObject private var model = DemoModel()
    @State private var item: PhotosPickerItem?
    @State private var photo: UIImage?
    @State private var question = "What is in the picture?"

    var body: some View {
        NavigationStack {
            Form {
                Section("Model") {
                    Text(model.summary?.line ?? "no model bundled").font(.footnote)
                }
                Section("Photo") {
                    PhotosPicker(selection: $item, matching: .images) {
                        Label(photo == nil ? "Pick a photo" : "Pick another photo", systemImage: "photo")
                    }
                    if let photo {
                        Image(uiImage: photo).resizable().scaledToFit().frame(maxHeight: 280)
                    }
                }
                Section("Question") {
                    TextField("Ask about the photo", text: $question, axis: .vertical)
                    Button(model.running ? "Answering…" : "Ask") {
                        model.ask(image: photo?.cgImage, question: question)
                    }
                    .disabled(model.running || model.summary == nil || question.isEmpty)
                }
                Section("Answer") {
                    Text(model.answer.isEmpty && model.running ? "…" : model.answer).textSelection(.enabled)
                    if !model.stats.isEmpty {
                        Text(model.stats).font(.caption.monospacedDigit())
                        Text(StatsFormatter.powerNote).font(.caption).foregroundStyle(.secondary)
                    }
                    if !model.message.isEmpty {
                        Text(model.message).font(.caption).foregroundStyle(.red)
                    }
                }
            }
            .navigationTitle("edgevlm")
        }
        .onChange(of: item) { _, picked in
            guard let picked else { return }
            Task { photo = try? await PhotoLoading.load(picked) }
        }
    }
}
