// EdgeVLM: edgevlm's native runtime for iOS and macOS apps, a thin Swift layer over the C API
// (runtime/include/edgevlm/c_api.h, imported as the Clang module CEdgeVLM: CEdgeVLM/module.modulemap).
// Not compiled where it was written (Linux has no Swift toolchain with CoreGraphics); it is written
// against the C header and Apple's documented CoreGraphics API (runtime/platforms/README.md).
import CEdgeVLM
import CoreGraphics
import Foundation

/// A failed edgevlm call: the C API's edgevlm_status and edgevlm_last_error(), which names the fix.
public struct EdgeVLMError: Error, CustomStringConvertible {
    public let status: Int
    public let message: String
    public var description: String { "edgevlm error \(status): \(message)" }

    static func last(_ status: edgevlm_status) -> EdgeVLMError {
        EdgeVLMError(status: Int(status.rawValue), message: String(cString: edgevlm_last_error()))
    }
}

/// Generation settings; the defaults are the C API's (greedy, 32 new tokens).
public struct EdgeVLMRunOptions {
    public var maxNewTokens = 32
    public var temperature: Float = 0
    public var topP: Float = 1
    public var seed: UInt64 = 0
    public init() {}
}

/// What a run produced: the generated text and the C API's result JSON
/// (urn:edgevlm:runner-result:1: text, tokens, stats).
public struct EdgeVLMResult {
    public let text: String
    public let json: String
}

/// One pipeline over an `edgevlm export` folder (manifest.json + artifacts, sha256-checked when
/// opened). Calls are serialised: the C pipeline is not thread-safe.
public final class EdgeVLM {
    private let pipeline: OpaquePointer
    private let lock = NSLock()

    /// vision: nil or "auto" (the manifest's preferred runnable artifact), "pte", or a vision
    /// artifact's file name; threads: ExecuTorch threadpool size, 0 keeps its default.
    public init(artifacts: URL, vision: String? = nil, verify: Bool = true, threads: Int = 0) throws {
        var options = edgevlm_open_options()
        edgevlm_open_options_default(&options)
        options.verify = verify ? 1 : 0
        options.threads = Int32(threads)
        var handle: OpaquePointer?
        let status = artifacts.withUnsafeFileSystemRepresentation { path in
            withOptionalCString(vision) { name -> edgevlm_status in
                options.vision = name
                return edgevlm_open(path, &options, &handle)
            }
        }
        guard status == EDGEVLM_OK, let handle else { throw EdgeVLMError.last(status) }
        pipeline = handle
    }

    public static func open(artifacts: URL, vision: String? = nil, verify: Bool = true,
                            threads: Int = 0) throws -> EdgeVLM {
        try EdgeVLM(artifacts: artifacts, vision: vision, verify: verify, threads: threads)
    }

    deinit { edgevlm_close(pipeline) }

    /// Images (none is fine) + prompt -> text, streamed to onText on the calling thread as it is
    /// generated. Images are drawn into sRGB RGBA8 first: a CGImage carries no EXIF orientation
    /// (apply UIImage.imageOrientation before), transparent pixels come out over black, and a
    /// Display P3 photo is converted to sRGB (Pillow, which the Python path uses, reads the raw values).
    public func run(images: [CGImage], prompt: String, options: EdgeVLMRunOptions = EdgeVLMRunOptions(),
                    onText: ((String) -> Void)? = nil) throws -> EdgeVLMResult {
        lock.lock()
        defer { lock.unlock() }
        let buffers = try images.enumerated().map { try PixelBuffer(image: $0.element, index: $0.offset) }
        let described = buffers.map {
            edgevlm_image(pixels: UnsafePointer($0.data), width: Int32($0.width), height: Int32($0.height),
                          row_bytes: 0, format: Int32(EDGEVLM_PIXELS_RGBA8.rawValue))
        }
        var settings = edgevlm_run_options()
        edgevlm_run_options_default(&settings)
        settings.max_new_tokens = Int32(options.maxNewTokens)
        settings.temperature = options.temperature
        settings.top_p = options.topP
        settings.seed = options.seed
        let sink = TextSink(onText)
        var json: UnsafeMutablePointer<CChar>?
        // a C function pointer cannot capture: the sink travels as user_data
        let callback: edgevlm_text_callback = { utf8, length, user in
            guard let utf8, let user else { return }
            let sink = Unmanaged<TextSink>.fromOpaque(user).takeUnretainedValue()
            let piece = String(decoding: UnsafeRawBufferPointer(start: utf8, count: length), as: UTF8.self)
            sink.text += piece
            sink.onText?(piece)
        }
        let status = withExtendedLifetime((buffers, sink)) {
            described.withUnsafeBufferPointer { list in
                prompt.withCString { text in
                    edgevlm_run(pipeline, list.baseAddress, list.count, text, &settings, callback,
                                Unmanaged.passUnretained(sink).toOpaque(), &json)
                }
            }
        }
        defer { edgevlm_free_string(json) }
        guard status == EDGEVLM_OK else { throw EdgeVLMError.last(status) }
        return EdgeVLMResult(text: sink.text, json: json.map { String(cString: $0) } ?? "")
    }
}

/// Collects the streamed text and forwards each piece.
private final class TextSink {
    var text = ""
    let onText: ((String) -> Void)?
    init(_ onText: ((String) -> Void)?) { self.onText = onText }
}

/// One image as RGBA8 (4 bytes per pixel, rows packed, the fourth byte unused), drawn by CoreGraphics.
private final class PixelBuffer {
    let data: UnsafeMutablePointer<UInt8>
    let width: Int
    let height: Int

    init(image: CGImage, index: Int) throws {
        let width = image.width, height = image.height
        let count = max(width * height * 4, 1)
        let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
        bytes.initialize(repeating: 0, count: count)
        // 8 bits per channel, R G B X in memory: CoreGraphics draws any source format into this
        let info = CGImageAlphaInfo.noneSkipLast.rawValue | CGBitmapInfo.byteOrder32Big.rawValue
        guard width > 0, height > 0, let space = CGColorSpace(name: CGColorSpace.sRGB),
              let context = CGContext(data: bytes, width: width, height: height, bitsPerComponent: 8,
                                      bytesPerRow: width * 4, space: space, bitmapInfo: info) else {
            bytes.deallocate()  // thrown before the stored properties are set, so deinit does not run
            throw EdgeVLMError(status: Int(EDGEVLM_ERROR_IMAGE.rawValue),
                               message: "image \(index) (\(width)x\(height)) cannot be drawn into an RGBA8 bitmap: "
                                   + "pass a decoded, non-empty CGImage")
        }
        context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
        self.data = bytes
        self.width = width
        self.height = height
    }

    deinit { data.deallocate() }
}

private func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) throws -> R) rethrows -> R {
    guard let text else { return try body(nil) }
    return try text.withCString { try body($0) }
}
