// PNG: 8-bit grey/RGB images to and from PNG files, and sample grids made from image tensors.
//
// The one file that talks to libpng. It uses only libpng's simplified API (png_image_*), which
// reports failures through its return value and `png_image.message` rather than longjmp, so no
// C error handler has to unwind through Swift frames.
//
// Shape alphabet: N images, C channels (1 grey or 3 RGB), H rows, W columns.
import CPNG
import Foundation

/// An 8-bit image: `height` rows of `width` pixels, each pixel `channels` bytes (1 grey, 3 RGB),
/// stored row-major with the channels interleaved: pixel (x, y) channel c is
/// `pixels[(y * width + x) * channels + c]`.
public struct Image8: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// 1 (grey) or 3 (RGB, in that order).
    public let channels: Int
    /// height × width × channels bytes, row-major, channels interleaved.
    public var pixels: [UInt8]

    /// An image from its bytes; `pixels.count` must be `width * height * channels`. A precondition, not
    /// a thrown error: only code makes Image8s (PNG.read and PNG.grid compute consistent sizes, and
    /// check the sizes they read first), so a mismatch here is a programming error.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "Image8: negative size \(width)×\(height)")
        precondition(channels == 1 || channels == 3, "Image8: channels must be 1 (grey) or 3 (RGB), not \(channels)")
        precondition(pixels.count == width * height * channels,
                     "Image8: \(pixels.count) bytes given for \(width)×\(height)×\(channels), which needs \(width * height * channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// An image with every byte set to `value`.
    public init(width: Int, height: Int, channels: Int, repeating value: UInt8) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [UInt8](repeating: value, count: max(width, 0) * max(height, 0) * channels))
    }

    /// The byte of channel `channel` of the pixel in column `x`, row `y`.
    public subscript(x x: Int, y y: Int, channel channel: Int) -> UInt8 {
        get { pixels[index(x, y, channel)] }
        set { pixels[index(x, y, channel)] = newValue }
    }

    private func index(_ x: Int, _ y: Int, _ c: Int) -> Int {
        precondition(x >= 0 && x < width && y >= 0 && y < height && c >= 0 && c < channels,
                     "Image8: pixel (\(x), \(y)) channel \(c) is outside a \(width)×\(height)×\(channels) image")
        return (y * width + x) * channels + c
    }
}

/// What went wrong reading or writing a PNG file; the description names the file and the cause.
public enum PNGError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// `write` was asked not to overwrite, and the file exists.
    case fileExists(path: String)
    /// The file could not be opened for writing (the message is the system's).
    case cannotCreate(path: String, message: String)
    /// libpng refused to read or write the file; `message` is libpng's own.
    case libpng(path: String, operation: String, message: String)
    /// The image is too large to address (its byte count overflows).
    case tooLarge(path: String, width: Int, height: Int)
    /// `PNG.grid` was given images of a shape it cannot lay out, or impossible layout arguments.
    case invalidGrid(shape: [Int], reason: String)

    public var description: String {
        switch self {
        case .fileExists(let path):
            return "PNG: \(path) exists already; pass overwrite: true to replace it, or choose another path"
        case .cannotCreate(let path, let message):
            return "PNG: cannot create \(path): \(message)"
        case .libpng(let path, let operation, let message):
            return "PNG: cannot \(operation) \(path): \(message)"
        case .tooLarge(let path, let width, let height):
            return "PNG: \(path) is \(width)×\(height) pixels, too large to hold in memory"
        case .invalidGrid(let shape, let reason):
            return "PNG.grid: cannot lay out images of shape \(shape): \(reason)"
        }
    }

    public var errorDescription: String? { description }
}

public enum PNG {
    // PNG_FORMAT_GRAY and PNG_FORMAT_RGB (= PNG_FORMAT_FLAG_COLOR): the macros defined in terms of
    // other macros do not import into Swift, so they are spelled out from png.h here.
    private static let formatGray = png_uint_32(0)
    private static let formatRGB = png_uint_32(PNG_FORMAT_FLAG_COLOR)

    /// libpng's description of `image` for writing, and its row stride; libpng takes 32-bit sizes and
    /// a signed 32-bit row stride, so a larger image is refused.
    private static func description(of image: Image8, path: String) throws -> (png_image, png_int_32) {
        guard image.width * image.channels <= Int(Int32.max), image.height <= Int(Int32.max) else {
            throw PNGError.tooLarge(path: path, width: image.width, height: image.height)
        }
        var png = png_image()
        png.version = png_uint_32(PNG_IMAGE_VERSION)
        png.width = png_uint_32(image.width)
        png.height = png_uint_32(image.height)
        png.format = image.channels == 3 ? formatRGB : formatGray
        return (png, png_int_32(image.width * image.channels))
    }

    /// Writes `image` to `path` as an 8-bit grey or RGB PNG.
    ///
    /// Refuses (throws `PNGError.fileExists`) when `path` exists and `overwrite` is false; the check
    /// and the creation are one step (`fopen` mode "x"), so a file made concurrently is not clobbered.
    /// A partly written file is removed when libpng fails.
    public static func write(_ image: Image8, to path: String, overwrite: Bool) throws {
        let (described, rowStride) = try description(of: image, path: path)
        var png = described
        guard let file = fopen(path, overwrite ? "wb" : "wbx") else {
            let code = errno
            if code == EEXIST { throw PNGError.fileExists(path: path) }
            throw PNGError.cannotCreate(path: path, message: String(cString: strerror(code)))
        }
        let ok = image.pixels.withUnsafeBytes { bytes in
            png_image_write_to_stdio(&png, file, 0, bytes.baseAddress, rowStride, nil)
        }
        let message = libpngMessage(png)
        png_image_free(&png)
        let closed = fclose(file), closeErrno = errno
        if ok == 0 || closed != 0 {
            remove(path)
            let cause = ok == 0 ? message : String(cString: strerror(closeErrno))
            throw PNGError.libpng(path: path, operation: "write", message: cause)
        }
    }

    /// `image` as the bytes of an 8-bit grey or RGB PNG file (for a page that embeds its images).
    public static func encode(_ image: Image8) throws -> Data {
        let (described, rowStride) = try description(of: image, path: "(in memory)")
        var png = described
        defer { png_image_free(&png) }
        return try image.pixels.withUnsafeBytes { pixels in
            var size = png_alloc_size_t(0)  // first the size, then the bytes
            guard png_image_write_to_memory(&png, nil, &size, 0, pixels.baseAddress, rowStride, nil) != 0 else {
                throw PNGError.libpng(path: "(in memory)", operation: "write", message: libpngMessage(png))
            }
            var data = Data(count: Int(size))
            let ok = data.withUnsafeMutableBytes { png_image_write_to_memory(&png, $0.baseAddress, &size, 0, pixels.baseAddress, rowStride, nil) }
            guard ok != 0 else { throw PNGError.libpng(path: "(in memory)", operation: "write", message: libpngMessage(png)) }
            return data.prefix(Int(size))
        }
    }

    /// Reads the PNG file at `path` as 8-bit grey (grey files) or RGB (colour and palette files).
    ///
    /// An alpha channel is composited onto black; 16-bit files are reduced to 8 bits by libpng
    /// (which treats 16-bit data as linear and converts it to sRGB). Throws `PNGError.libpng` with
    /// libpng's message for a missing, unreadable, corrupt or truncated file.
    public static func read(_ path: String) throws -> Image8 {
        var png = png_image()
        png.version = png_uint_32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_file(&png, path) != 0 else {
            let message = libpngMessage(png)
            png_image_free(&png)  // libpng frees on error already; this is a harmless no-op then
            throw PNGError.libpng(path: path, operation: "read", message: message)
        }
        let isColour = (png.format & formatRGB) != 0
        let channels = isColour ? 3 : 1
        png.format = isColour ? formatRGB : formatGray
        let width = Int(png.width), height = Int(png.height)
        let (rowBytes, o1) = width.multipliedReportingOverflow(by: channels)
        let (byteCount, o2) = rowBytes.multipliedReportingOverflow(by: height)
        guard !o1, !o2, rowBytes <= Int(Int32.max) else {
            png_image_free(&png)
            throw PNGError.tooLarge(path: path, width: width, height: height)
        }
        // Zero-filled, so that compositing an alpha channel "directly onto the buffer" means onto black.
        var pixels = [UInt8](repeating: 0, count: byteCount)
        let ok = pixels.withUnsafeMutableBytes { bytes in
            png_image_finish_read(&png, nil, bytes.baseAddress, png_int_32(rowBytes), nil)
        }
        guard ok != 0 else {
            let message = libpngMessage(png)
            png_image_free(&png)
            throw PNGError.libpng(path: path, operation: "read", message: message)
        }
        return Image8(width: width, height: height, channels: channels, pixels: pixels)
    }

    /// Lays out images [N, C, H, W] (C = 1 or 3) as one picture: rows of `columns` images (fewer
    /// when N < columns), `padding` pixels of `border` around and between them, the last row's empty
    /// slots filled with `border`. Values are clamped to `range` and mapped linearly onto 0...255
    /// (rounded to nearest; NaN becomes 0). Image n sits in grid row n / columns, column n % columns,
    /// with its top-left pixel at (padding + column·(W·scale + padding), padding + row·(H·scale + L + padding)),
    /// L the height of the labels (0 without),
    /// each of its pixels drawn as a `scale` × `scale` square (so a 28-pixel image can be seen).
    /// To show originals above reconstructions, pass them as consecutive images with `columns` = the
    /// number in each group.
    ///
    /// With `labels` (one per image), each image has its label written below it in the 5×7 font
    /// (black on a light border, white on a dark one), wrapped at spaces to the image's width, in at most
    /// `labelLines` lines; every row of the grid leaves room for its longest label.
    ///
    /// The default border is white, which stands out against Fashion-MNIST's black backgrounds.
    ///
    /// Throws `PNGError.invalidGrid` for images that are not [N ≥ 1, 1 or 3, H, W] or for impossible
    /// layout arguments: images can come from a file (a run's samples), so their shape is checked here
    /// rather than trusted.
    public static func grid(_ images: Tensor, columns: Int, padding: Int = 2, scale: Int = 1,
                            range: ClosedRange<Float> = 0...1, border: UInt8 = 255,
                            labels: [String] = [], labelLines: Int = 4) throws -> Image8 {
        func invalid(_ reason: String) -> PNGError { .invalidGrid(shape: images.shape, reason: reason) }
        guard images.rank == 4 else { throw invalid("expected images [N, C, H, W]; reshape a single image to [1, C, H, W]") }
        let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        guard c == 1 || c == 3 else { throw invalid("C must be 1 (grey) or 3 (RGB)") }
        guard n >= 1 else { throw invalid("there are no images (N = 0)") }
        guard h >= 0 && w >= 0 else { throw invalid("negative image size") }
        guard columns >= 1 else { throw invalid("columns must be at least 1, not \(columns)") }
        guard padding >= 0 else { throw invalid("padding must be non-negative, not \(padding)") }
        guard (1...64).contains(scale) else { throw invalid("scale must be 1 to 64, not \(scale)") }
        guard range.lowerBound < range.upperBound && range.lowerBound.isFinite && range.upperBound.isFinite else {
            throw invalid("range \(range) must be finite and non-empty")
        }
        // The picture's size, with every product checked: a shape read from a file may be anything.
        let gridColumns = min(columns, n), gridRows = n / columns + (n % columns == 0 ? 0 : 1)
        func span(_ count: Int, _ size: Int) -> Int? {
            let (cells, o1) = count.multipliedReportingOverflow(by: size)
            let (gaps, o2) = (count + 1).multipliedReportingOverflow(by: padding)
            let (total, o3) = cells.addingReportingOverflow(gaps)
            return o1 || o2 || o3 ? nil : total
        }
        guard labels.isEmpty || labels.count == n else { throw invalid("\(labels.count) labels for \(n) images; give one per image, or none") }
        guard labelLines >= 1 else { throw invalid("labelLines \(labelLines) must be at least 1") }
        let (scaledWidth, o3) = w.multipliedReportingOverflow(by: scale), (imageHeight, o4) = h.multipliedReportingOverflow(by: scale)
        let wrapped = labels.map { Image8.wrap($0, width: max(1, (scaledWidth + 1) / Image8.characterAdvance), lines: labelLines) }
        let labelHeight = wrapped.isEmpty ? 0 : 2 + (wrapped.map(\.count).max() ?? 0) * Image8.lineAdvance
        let (scaledHeight, o5) = imageHeight.addingReportingOverflow(labelHeight)
        guard !o3, !o4, !o5, let width = span(gridColumns, scaledWidth), let height = span(gridRows, scaledHeight),
              case let (pixels, o1) = width.multipliedReportingOverflow(by: height), !o1,
              case let (bytes, o2) = pixels.multipliedReportingOverflow(by: c), !o2, bytes <= Int(Int32.max) else {
            throw invalid("the grid would be too large to hold (over 2 GiB)")
        }
        var out = Image8(width: width, height: height, channels: c, repeating: border)

        let low = range.lowerBound, byteScale = 255 / (range.upperBound - range.lowerBound)
        let src = images.data  // [N, C, H, W]
        out.pixels.withUnsafeMutableBufferPointer { dst in  // [height, width, C]
            for i in 0..<n {
                let x0 = padding + (i % columns) * (scaledWidth + padding)
                let y0 = padding + (i / columns) * (scaledHeight + padding)
                for ch in 0..<c {
                    let plane = src + (i * c + ch) * h * w  // [H, W]
                    for y in 0..<imageHeight {
                        let rowStart = ((y0 + y) * width + x0) * c + ch, sourceRow = plane + (y / scale) * w
                        for x in 0..<scaledWidth {
                            dst[rowStart + x * c] = toByte(sourceRow[x / scale], low: low, scale: byteScale)
                        }
                    }
                }
            }
        }
        for (i, lines) in wrapped.enumerated() {
            let x0 = padding + (i % columns) * (scaledWidth + padding)
            let y0 = padding + (i / columns) * (scaledHeight + padding) + imageHeight + 2
            for (index, line) in lines.enumerated() {
                out.draw(line, x: x0, y: y0 + index * Image8.lineAdvance, value: border > 127 ? 0 : 255)
            }
        }
        return out
    }

    /// `grid(...)` written to `path` (see `grid` for the layout and `write` for `overwrite`).
    public static func writeGrid(_ images: Tensor, columns: Int, padding: Int = 2, scale: Int = 1,
                                 range: ClosedRange<Float> = 0...1, border: UInt8 = 255, labels: [String] = [],
                                 to path: String, overwrite: Bool) throws {
        let image = try grid(images, columns: columns, padding: padding, scale: scale, range: range, border: border, labels: labels)
        try write(image, to: path, overwrite: overwrite)
    }

    /// (v − low) · scale, clamped to 0...255 and rounded; NaN maps to 0.
    @inline(__always)
    private static func toByte(_ v: Float, low: Float, scale: Float) -> UInt8 {
        let t = (v - low) * scale
        if t.isNaN || t <= 0 { return 0 }
        if t >= 255 { return 255 }
        return UInt8(t.rounded())
    }

    /// libpng's message from `png.message` (a NUL-terminated char[64]), read without trusting the NUL.
    private static func libpngMessage(_ png: png_image) -> String {
        withUnsafeBytes(of: png.message) { raw in
            let bytes = raw.prefix { $0 != 0 }
            let text = String(decoding: bytes, as: UTF8.self)
            return text.isEmpty ? "unknown libpng error" : text
        }
    }
}
