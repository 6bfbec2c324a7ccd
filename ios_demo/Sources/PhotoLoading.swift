// A picked photo as an upright sRGB CGImage: a CGImage carries no EXIF orientation, so the
// UIImage is redrawn with its orientation applied before the runtime sees the pixels.
import PhotosUI
import SwiftUI
import UIKit

enum PhotoLoading {
    static func load(_ item: PhotosPickerItem) async throws -> UIImage? {
        guard let data = try await item.loadTransferable(type: Data.self), let image = UIImage(data: data) else {
            return nil
        }
        return upright(image)
    }

    static func upright(_ image: UIImage) -> UIImage {
        if image.imageOrientation == .up { return image }
        let format = UIGraphicsImageRendererFormat()
        format.scale = image.scale
        return UIGraphicsImageRenderer(size: image.size, format: format).image { _ in
            image.draw(in: CGRect(origin: .zero, size: image.size))
        }
    }
}
