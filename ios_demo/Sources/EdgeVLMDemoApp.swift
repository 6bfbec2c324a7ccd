// The demo's entry point: one window holding ContentView.
import SwiftUI

@main
struct EdgeVLMDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
