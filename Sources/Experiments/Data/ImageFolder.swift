// Your own images: a JSONL manifest beside a folder of PNG files (`data.images: path/manifest.jsonl`).
//
// One JSON object per line (blank lines are skipped):
//   {"image": "train/00001.png", "caption": "a red shoe", "label": 3, "split": "train"}
// - image:    path of a PNG file (grey, RGB, palette, with or without alpha, 8 or 16 bits), relative to
//             the manifest's directory (or absolute).
// - caption:  the image's caption, used as given; or "captions": a list of phrasings, which the training
//             documents rotate through as they do Fashion-MNIST's generated phrasings (evaluation uses the first).
// - label:    optional class index ≥ 0 (all records or none); names come from `data.classes`.
// - split:    optional "train" or "test" (all records or none); without it a seeded share of the records
//             (data.test_share, data.split_seed) is held out as the test split.
// Any other key is refused, so a misspelt key cannot be silently ignored.
//
// Every image is centre-cropped to a square and resampled to the autoencoder's side by area averaging
// (each output pixel the mean of the source area it covers; an image of the right size passes through
// unchanged), then brought to the autoencoder's channels (grey → RGB repeats the grey; RGB → grey is
// luma, ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B). Errors name the manifest line and the file.
import Foundation
import Fusion

enum ImageFolder {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// A manifest's train and test splits, and a digest of everything they depend on (the manifest, every
    /// image file's bytes and the split settings), which keys the caches built from them.
    struct Loaded {
        let train: ImageDataset
        let test: ImageDataset
        let digest: String
    }

    private struct Record {
        let line: Int
        let image: String
        let captions: [String]
        let label: Int32?
        let split: String?
    }

    static let keys: Set<String> = ["image", "caption", "captions", "label", "split"]

    /// Reads `manifest` and every image it names. `classCount`: labels must lie below it (nil: any ≥ 0).
    static func load(manifest: String, side: Int, channels: Int, testShare: Float, splitSeed: UInt64,
                     classCount: Int?) throws -> Loaded {
        guard let data = FileManager.default.contents(atPath: manifest) else {
            let exists = FileManager.default.fileExists(atPath: manifest)
            throw Failure(description: "data.images: \(manifest) \(exists ? "cannot be read" : "does not exist"); give the path of a JSONL manifest "
                          + "(one {\"image\": …, \"caption\": …} per line), or fashion-mnist for the built-in images")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Failure(description: "\(manifest): not UTF-8 text; a manifest is JSON Lines")
        }
        var digest = SHA256()
        digest.update(data)
        let records = try parse(text, manifest: manifest, classCount: classCount)
        let directory = (manifest as NSString).deletingLastPathComponent

        // The split first, so that each image is resampled straight into its split's tensor.
        let splitsGiven = records.first?.split != nil
        let isTest: [Bool]
        if splitsGiven {
            isTest = records.map { $0.split == "test" }
        } else {
            let testCount = Int((Double(testShare) * Double(records.count)).rounded())
            var generator = RandomGenerator(seed: splitSeed).split(key: "test-split")
            var held = [Bool](repeating: false, count: records.count)
            for index in generator.permutation(records.count).prefix(testCount) { held[index] = true }
            isTest = held
        }
        let members = [false, true].map { test in records.indices.filter { isTest[$0] == test } }  // [training, test]
        for (test, chosen) in zip([false, true], members) where chosen.isEmpty {
            throw Failure(description: "\(manifest): no \(test ? "test" : "training") images (\(records.count) records"
                          + (splitsGiven ? ", split by their \"split\" fields)" : ", data.test_share = \(testShare))")
                          + "; both splits need at least one")
        }
        let parts = members.map { Tensor(uninitializedShape: [$0.count, channels, side, side]) }
        var slot = [(part: Int, row: Int)](repeating: (0, 0), count: records.count)
        for (part, chosen) in members.enumerated() { for (row, n) in chosen.enumerated() { slot[n] = (part, row) } }

        for (n, record) in records.enumerated() {
            let path = record.image.hasPrefix("/") ? record.image : (directory as NSString).appendingPathComponent(record.image)
            guard let bytes = FileManager.default.contents(atPath: path) else {
                throw Failure(description: "\(manifest):\(record.line): image \(path) does not exist or cannot be read")
            }
            digest.update(bytes)
            let picture: Image8
            do { picture = try PNG.read(path) } catch {
                throw Failure(description: "\(manifest):\(record.line): \(error)")
            }
            guard picture.width > 0, picture.height > 0 else {
                throw Failure(description: "\(manifest):\(record.line): \(path) has no pixels")
            }
            resample(picture, side: side, channels: channels, into: parts[slot[n].part].data + slot[n].row * channels * side * side)
        }
        // The split is part of what the caches built from the images depend on.
        digest.update(Array((splitsGiven ? "splits as given" : "test_share \(testShare) split_seed \(splitSeed)").utf8))

        let subsets = zip(members, parts).map { chosen, images in
            ImageDataset(images: images, labels: records[0].label == nil ? nil : chosen.map { records[$0].label! },
                         captions: .given(chosen.map { records[$0].captions }))
        }
        return Loaded(train: subsets[0], test: subsets[1], digest: SHA256.hex(digest.finalize()))
    }

    /// The manifest's records, each checked: keys, types, and labels and splits on all records or none.
    private static func parse(_ text: String, manifest: String, classCount: Int?) throws -> [Record] {
        var records: [Record] = []
        for entry in try JSONLines.records(text, path: manifest, keys: keys, example: "{\"image\": \"…png\", \"caption\": \"…\"}") {
            let object = entry.object, fail = entry.failure
            guard let image = object["image"] as? String, !image.isEmpty else {
                throw fail("\"image\" must be the path of a PNG file (relative to the manifest's directory)")
            }
            var captions: [String]
            switch (object["caption"], object["captions"]) {
            case (let one as String, nil): captions = [one]
            case (nil, let many as [Any]):
                captions = many.compactMap { $0 as? String }
                guard captions.count == many.count else { throw fail("\"captions\" must be a list of strings") }
            case (nil, nil): throw fail("no caption: give \"caption\" (a string) or \"captions\" (a list of strings)")
            case (.some, .some): throw fail("give \"caption\" or \"captions\", not both")
            default: throw fail("\"caption\" must be a string")
            }
            guard !captions.isEmpty, captions.allSatisfy({ !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) else {
                throw fail("captions must not be empty")
            }
            var label: Int32? = nil
            if let value = object["label"] {
                // JSONSerialization gives an NSNumber for 3, 3.5 and true alike (a boolean's type code is "c");
                // only a whole number is a class.
                guard let number = value as? NSNumber, String(cString: number.objCType) != "c",
                      let whole = Int32(exactly: number.doubleValue), whole >= 0 else {
                    throw fail("\"label\" must be a class index ≥ 0, not \(value)")
                }
                if let classCount, Int(whole) >= classCount {
                    throw fail("label \(whole) has no name: data.classes lists \(classCount) classes (0…\(classCount - 1))")
                }
                label = whole
            }
            let split = try entry.split()
            if let first = records.first {
                if (first.label == nil) != (label == nil) {
                    throw fail("\(label == nil ? "no" : "a") \"label\", but line \(first.line) \(first.label == nil ? "has none" : "has one"); give labels on all records or none")
                }
                if (first.split == nil) != (split == nil) {
                    throw fail("\(split == nil ? "no" : "a") \"split\", but line \(first.line) \(first.split == nil ? "has none" : "has one"); give splits on all records or none")
                }
            }
            records.append(Record(line: entry.line, image: image, captions: captions, label: label, split: split))
        }
        guard !records.isEmpty else { throw Failure(description: "\(manifest): no records; each line is one {\"image\": …, \"caption\": …}") }
        return records
    }

    /// Centre-crops `picture` to a square, resamples it to side × side by area averaging and writes it
    /// as `channels` planes of values in [0, 1] to `target`.
    static func resample(_ picture: Image8, side: Int, channels: Int, into target: UnsafeMutablePointer<Float>) {
        let square = min(picture.width, picture.height)
        let left = (picture.width - square) / 2, top = (picture.height - square) / 2
        // Source pixel (x, y) as values in [0, 1], in the target's channel count.
        func value(_ x: Int, _ y: Int, _ c: Int) -> Float {
            let base = ((top + y) * picture.width + left + x) * picture.channels
            if picture.channels == channels { return Float(picture.pixels[base + c]) / 255 }
            if picture.channels == 1 { return Float(picture.pixels[base]) / 255 }
            return (0.299 * Float(picture.pixels[base]) + 0.587 * Float(picture.pixels[base + 1])
                    + 0.114 * Float(picture.pixels[base + 2])) / 255
        }
        if square == side {
            for c in 0..<channels { for y in 0..<side { for x in 0..<side { target[(c * side + y) * side + x] = value(x, y, c) } } }
            return
        }
        // Output pixel i covers source [i·r, (i+1)·r) along each axis, r = square / side; each source
        // pixel it overlaps counts by the overlap's length.
        let ratio = Double(square) / Double(side)
        let spans: [[(index: Int, weight: Double)]] = (0..<side).map { i in
            let start = Double(i) * ratio, end = Double(i + 1) * ratio
            return (Int(start.rounded(.down))..<min(Int(end.rounded(.up)), square)).compactMap { s in
                let overlap = min(end, Double(s + 1)) - max(start, Double(s))
                return overlap > 0 ? (s, overlap / ratio) : nil
            }
        }
        for c in 0..<channels {
            for y in 0..<side {
                for x in 0..<side {
                    var sum = 0.0
                    for (sy, wy) in spans[y] { for (sx, wx) in spans[x] { sum += wy * wx * Double(value(sx, sy, c)) } }
                    target[(c * side + y) * side + x] = Float(sum)
                }
            }
        }
    }
}
