// `fusion data export`: the built-in data written out in the formats `data.images` and `data.text` read,
// so that a run from the folders can be checked against the built-in route, and so that a researcher has
// a working example of each format to copy. Images are the padded 32×32 Fashion-MNIST images as 8-bit
// grey PNGs (value·255 is the original byte, so reading them back gives the same floats); each manifest
// record carries every generated phrasing of its caption, in variant order, so the documents choose
// the same phrasing the built-in route does.
import Foundation
import Fusion

enum DataExport {
    struct Written {
        let manifest: String
        let textFolder: String
        let trainImages: Int
        let testImages: Int
        let plays: Int

        /// The config overrides that train from the written folders.
        var overrides: [String] {
            ["data.images=\(manifest)", "data.text=\(textFolder)",
             "data.classes=[\(FashionMNIST.classNames.map { "'\($0)'" }.joined(separator: ", "))]"]
        }
    }

    /// Writes the first `trainImages` training and `testImages` test images with their captions to
    /// `directory`/images/{train,test}/NNNNN.png and `directory`/manifest.jsonl, and every play to
    /// `directory`/text/NAME.txt. Refuses a directory that already holds a manifest (nothing is overwritten).
    static func fashionMNIST(to directory: String, trainImages: Int, testImages: Int) throws -> Written {
        let manifest = directory + "/manifest.jsonl", textFolder = directory + "/text"
        guard !FileManager.default.fileExists(atPath: manifest) else {
            throw RunFailure(description: "\(manifest) exists already; choose an empty --out directory")
        }
        let sets = [("train", try FashionMNIST.load(.train), trainImages), ("test", try FashionMNIST.load(.test), testImages)]
        var lines: [String] = []
        for (split, set, wanted) in sets {
            guard (1...set.count).contains(wanted) else {
                throw RunFailure(description: "--\(split)-images \(wanted): Fashion-MNIST's \(split) split has 1…\(set.count) images")
            }
            let folder = "\(directory)/images/\(split)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let dataset = ImageDataset(set), size = set.side * set.side
            for n in 0..<wanted {
                let bytes = (0..<size).map { UInt8((set.images.data[n * size + $0] * 255).rounded()) }
                let name = String(format: "%05d.png", n)
                try PNG.write(Image8(width: set.side, height: set.side, channels: 1, pixels: bytes), to: "\(folder)/\(name)", overwrite: true)
                let record: [String: Any] = [
                    "image": "images/\(split)/\(name)", "label": Int(set.labels[n]), "split": split,
                    "captions": (0..<Captions.variantCount).map { dataset.captionText(index: n, variant: $0) },
                ]
                let json = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes])
                lines.append(String(decoding: json, as: UTF8.self))
            }
        }
        try FileManager.default.createDirectory(atPath: textFolder, withIntermediateDirectories: true)
        let corpus = try ShakespeareCorpus.load()
        for play in corpus.trainingPlays + corpus.heldOutPlays {
            try Data(play.text.utf8).write(to: URL(fileURLWithPath: "\(textFolder)/\(play.name).txt"))
        }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: manifest), options: .atomic)
        return Written(manifest: manifest, textFolder: textFolder, trainImages: trainImages, testImages: testImages,
                       plays: corpus.trainingPlays.count + corpus.heldOutPlays.count)
    }
}
