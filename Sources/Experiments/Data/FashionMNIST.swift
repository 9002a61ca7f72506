// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv 1708.07747): 70,000 28×28 grey images of 10
// clothing classes, read from the IDX files Debian's `dataset-fashion-mnist` installs.
//
// IDX format (LeCun's MNIST page): big-endian; magic 0x00000803 for a uint8 3-D array (images),
// 0x00000801 for a uint8 1-D array (labels); then the dimension sizes; then the bytes.
import Foundation
import Fusion

public enum FashionMNIST {
    public static let directory = "/usr/share/datasets/fashion-mnist"
    public static let classNames = ["T-shirt/top", "trouser", "pullover", "dress", "coat",
                                    "sandal", "shirt", "sneaker", "bag", "ankle boot"]
    static let setupHint = "run scripts/setup (it installs Debian's dataset-fashion-mnist)"

    public enum Split: String { case train, test }

    public struct DataError: Error, CustomStringConvertible {
        public let description: String
    }

    /// One split: `images` [N, 1, S, S] with values in [0, 1] (S = 28 + 2·padding, zero border),
    /// `labels` N class indices.
    public struct Set {
        public let images: Tensor
        public let labels: [Int32]
        public var count: Int { labels.count }
        public var side: Int { images.shape[2] }
    }

    /// Loads a split; `padding` adds a zero border (2 gives the 32×32 the autoencoders expect).
    public static func load(_ split: Split, padding: Int = 2, directory: String = directory) throws -> Set {
        let prefix = split == .train ? "train" : "t10k"
        let expectedCount = split == .train ? 60_000 : 10_000
        let imagePath = "\(directory)/\(prefix)-images-idx3-ubyte.gz"
        let labelPath = "\(directory)/\(prefix)-labels-idx1-ubyte.gz"
        let imageBytes = try read(imagePath)
        let labelBytes = try read(labelPath)

        try expect(imageBytes, magic: 0x0000_0803, dimensions: [expectedCount, 28, 28], path: imagePath)
        try expect(labelBytes, magic: 0x0000_0801, dimensions: [expectedCount], path: labelPath)

        let side = 28 + 2 * padding
        let images = Tensor(zeros: [expectedCount, 1, side, side])
        imageBytes.withUnsafeBufferPointer { bytes in
            let pixels = bytes.baseAddress! + 16
            for n in 0..<expectedCount {
                let target = images.data + n * side * side
                for row in 0..<28 {
                    for column in 0..<28 {
                        target[(row + padding) * side + column + padding] = Float(pixels[(n * 28 + row) * 28 + column]) / 255
                    }
                }
            }
        }
        var labels = [Int32](repeating: 0, count: expectedCount)
        for n in 0..<expectedCount {
            let label = labelBytes[8 + n]
            guard label < 10 else {
                throw DataError(description: "\(labelPath): label \(label) at item \(n) is not a class 0…9; the file is corrupt — \(setupHint)")
            }
            labels[n] = Int32(label)
        }
        return Set(images: images, labels: labels)
    }

    private static func read(_ path: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError(description: "\(path) is missing — \(setupHint)")
        }
        do { return try Gzip.readAll(path) } catch {
            throw DataError(description: "\(path) could not be read (\(error)) — \(setupHint)")
        }
    }

    /// Checks the IDX header: magic number, dimension sizes and that the payload is all there.
    private static func expect(_ bytes: [UInt8], magic: UInt32, dimensions: [Int], path: String) throws {
        func word(_ offset: Int) -> Int {
            Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        }
        let header = 4 + 4 * dimensions.count
        guard bytes.count >= 4 else {
            throw DataError(description: "\(path): \(bytes.count) bytes is too short for an IDX header — \(setupHint)")
        }
        guard word(0) == Int(magic) else {
            throw DataError(description: String(format: "%@: magic number 0x%08x, expected 0x%08x (not a Fashion-MNIST IDX file) — %@",
                                                path, word(0), magic, setupHint))
        }
        guard bytes.count >= header else {
            throw DataError(description: "\(path): \(bytes.count) bytes is too short for an IDX header — \(setupHint)")
        }
        let found = (0..<dimensions.count).map { word(4 + 4 * $0) }
        guard found == dimensions else {
            throw DataError(description: "\(path): dimensions \(found), expected \(dimensions) — \(setupHint)")
        }
        let payload = dimensions.reduce(1, *)
        guard bytes.count == header + payload else {
            throw DataError(description: "\(path): \(bytes.count - header) data bytes, expected \(payload) (truncated?) — \(setupHint)")
        }
    }
}
