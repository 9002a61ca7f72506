// Your own data (data.images, data.text): manifests and text folders read and checked, with errors that
// name the file and line; images cropped, resampled and converted as documented (checked against an
// independent computation); the built-in data exported to folders trains to the same numbers as the
// built-in route; and a small RGB folder trains an autoencoder and a run end to end.
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class DataSourceTests: XCTestCase {
    // MARK: Manifests

    /// Writes `lines` as root/manifest.jsonl beside a 4×4 grey PNG a.png; returns the manifest's path.
    private func manifest(_ lines: [String], in root: String) throws -> String {
        try PNG.write(Image8(width: 4, height: 4, channels: 1, repeating: 128), to: root + "/a.png", overwrite: true)
        let path = root + "/manifest.jsonl"
        try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func load(_ path: String, classCount: Int? = nil, testShare: Float = 0.5) throws -> ImageFolder.Loaded {
        try ImageFolder.load(manifest: path, side: 4, channels: 1, testShare: testShare, splitSeed: 0, classCount: classCount)
    }

    func testEveryBadRecordIsNamedByItsLine() throws {
        let root = try temporaryDirectory()
        let good = #"{"image": "a.png", "caption": "a grey square", "label": 1}"#
        let cases: [(String, String)] = [
            ("not json", "not a JSON object"),
            (#"{"image": "a.png", "captoin": "x"}"#, "unknown key captoin"),
            (#"{"image": "a.png"}"#, "no caption"),
            (#"{"image": "a.png", "caption": "x", "captions": ["y"]}"#, "not both"),
            (#"{"image": "a.png", "caption": 3}"#, "must be a string"),
            (#"{"image": "a.png", "captions": ["x", 3]}"#, "list of strings"),
            (#"{"image": "a.png", "caption": "  "}"#, "must not be empty"),
            (#"{"image": "a.png", "caption": "x", "label": true}"#, "class index"),
            (#"{"image": "a.png", "caption": "x", "label": 1.5}"#, "class index"),
            (#"{"image": "a.png", "caption": "x", "label": -1}"#, "class index"),
            (#"{"image": "a.png", "caption": "x"}"#, "labels on all records or none"),
            (#"{"image": "a.png", "caption": "x", "label": 0, "split": "val"}"#, "\"train\" or \"test\""),
            (#"{"image": "a.png", "caption": "x", "label": 0, "split": "test"}"#, "splits on all records or none"),
            (#"{"image": "missing.png", "caption": "x", "label": 0}"#, "missing.png does not exist"),
            (#"{"image": "", "caption": "x", "label": 0}"#, "must be the path of a PNG"),
        ]
        for (bad, expected) in cases {
            let path = try manifest([good, "", bad, good], in: root)
            XCTAssertThrowsError(try load(path)) {
                XCTAssertTrue("\($0)".contains("manifest.jsonl:3: ") && "\($0)".contains(expected), "\(bad): \($0)")
            }
        }
        // A label beyond data.classes, a damaged PNG, an empty manifest, a missing one, and a split left empty.
        XCTAssertThrowsError(try load(try manifest([good, #"{"image": "a.png", "caption": "x", "label": 4}"#], in: root), classCount: 3)) {
            XCTAssertTrue("\($0)".contains("manifest.jsonl:2: label 4 has no name: data.classes lists 3 classes"), "\($0)")
        }
        let path = try manifest([good, good], in: root)
        try Data([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]).write(to: URL(fileURLWithPath: root + "/a.png"))
        XCTAssertThrowsError(try load(path)) { XCTAssertTrue("\($0)".contains("manifest.jsonl:1: PNG: cannot read"), "\($0)") }
        XCTAssertThrowsError(try load(try manifest(["", " "], in: root))) { XCTAssertTrue("\($0)".contains("no records"), "\($0)") }
        XCTAssertThrowsError(try load(root + "/nowhere.jsonl")) { XCTAssertTrue("\($0)".contains("does not exist"), "\($0)") }
        XCTAssertThrowsError(try load(try manifest([good], in: root))) {
            XCTAssertTrue("\($0)".contains("both splits need at least one"), "\($0)")
        }
        // The config refuses a source that is neither built in nor a manifest, before anything is read.
        XCTAssertThrowsError(try ExperimentConfig.load(file: nil, overrides: ["data.images=photos/"]).validate()) {
            XCTAssertTrue("\($0)".contains("data.images") && "\($0)".contains("JSONL manifest"), "\($0)")
        }
    }

    /// Without "split" fields, round(share · N) records are held out, chosen by data.split_seed alone.
    func testTheHeldOutShareIsSeeded() throws {
        let root = try temporaryDirectory()
        let lines = (0..<40).map { #"{"image": "a.png", "caption": "image \#($0)"}"# }
        let path = try manifest(lines, in: root)
        func testCaptions(seed: UInt64) throws -> [String] {
            let loaded = try ImageFolder.load(manifest: path, side: 4, channels: 1, testShare: 0.25, splitSeed: seed, classCount: nil)
            XCTAssertEqual(loaded.train.count + loaded.test.count, 40)
            XCTAssertNil(loaded.test.labels)
            return (0..<loaded.test.count).map { loaded.test.captionText(index: $0, variant: 0) }
        }
        let first = try testCaptions(seed: 0)
        XCTAssertEqual(first.count, 10)
        // The split keys the caches: the digest changes with the seed and the share, not otherwise.
        func digest(seed: UInt64, share: Float) throws -> String {
            try ImageFolder.load(manifest: path, side: 4, channels: 1, testShare: share, splitSeed: seed, classCount: nil).digest
        }
        XCTAssertEqual(try digest(seed: 0, share: 0.25), try digest(seed: 0, share: 0.25))
        XCTAssertNotEqual(try digest(seed: 0, share: 0.25), try digest(seed: 1, share: 0.25))
        XCTAssertNotEqual(try digest(seed: 0, share: 0.25), try digest(seed: 0, share: 0.3))
        XCTAssertEqual(try testCaptions(seed: 0), first)
        XCTAssertNotEqual(try testCaptions(seed: 1), first)
        // Held-out records keep the manifest's order.
        let order = first.map { Int($0.dropFirst("image ".count))! }
        XCTAssertEqual(order, order.sorted())
        // Windows line ends read as line ends.
        let windows = try manifest([#"{"image": "a.png", "caption": "one"}"#, #"{"image": "a.png", "caption": "two"}"#], in: root)
        try Data((try String(contentsOfFile: windows, encoding: .utf8)).replacingOccurrences(of: "\n", with: "\r\n").utf8)
            .write(to: URL(fileURLWithPath: windows))
        let crlf = try ImageFolder.load(manifest: windows, side: 4, channels: 1, testShare: 0.5, splitSeed: 0, classCount: nil)
        XCTAssertEqual(crlf.train.count + crlf.test.count, 2)
    }

    /// Cropping, area resampling and channel conversion against a direct computation: a 12×9 RGB image
    /// is cropped to its central 9×9 and averaged in 3×3 blocks to 3×3; luma is 0.299 R + 0.587 G + 0.114 B.
    func testImagesAreCroppedResampledAndConverted() throws {
        var rgb = Image8(width: 12, height: 9, channels: 3, repeating: 0)
        for y in 0..<9 { for x in 0..<12 { for c in 0..<3 { rgb[x: x, y: y, channel: c] = UInt8((x * 7 + y * 13 + c * 50) % 256) } } }
        let target = UnsafeMutablePointer<Float>.allocate(capacity: 27)
        defer { target.deallocate() }
        ImageFolder.resample(rgb, side: 3, channels: 3, into: target)
        for c in 0..<3 {
            for by in 0..<3 {
                for bx in 0..<3 {
                    var sum = 0.0
                    for y in (3 * by)..<(3 * by + 3) { for x in (3 * bx)..<(3 * bx + 3) { sum += Double(rgb[x: x + 1, y: y, channel: c]) } }
                    XCTAssertEqual(Double(target[(c * 3 + by) * 3 + bx]), sum / 9 / 255, accuracy: 1e-6)
                }
            }
        }
        ImageFolder.resample(rgb, side: 3, channels: 1, into: target)
        var sum = 0.0
        for y in 0..<3 { for x in 1..<4 {
            sum += 0.299 * Double(rgb[x: x, y: y, channel: 0]) + 0.587 * Double(rgb[x: x, y: y, channel: 1]) + 0.114 * Double(rgb[x: x, y: y, channel: 2])
        } }
        XCTAssertEqual(Double(target[0]), sum / 9 / 255, accuracy: 1e-5)
        // Grey to RGB repeats the grey; an image of the right size passes through as byte / 255 exactly.
        let grey = Image8(width: 3, height: 3, channels: 1, pixels: (0..<9).map { UInt8($0 * 31) })
        ImageFolder.resample(grey, side: 3, channels: 3, into: target)
        for c in 0..<3 { for i in 0..<9 { XCTAssertEqual(target[c * 9 + i], Float(i * 31) / 255) } }
        // Upsampling: a 2×2 image to 4×4 covers each source pixel with a 2×2 block.
        let small = Image8(width: 2, height: 2, channels: 1, pixels: [0, 60, 120, 240])
        ImageFolder.resample(small, side: 4, channels: 1, into: target)
        XCTAssertEqual((0..<16).map { target[$0] }, [0, 0, 60, 60, 0, 0, 60, 60, 120, 120, 240, 240, 120, 120, 240, 240].map { Float($0) / 255 })
    }

    /// A checkpoint written before the data keys existed resumes without --allow-change while they hold
    /// their defaults (the behaviour it was trained with); another value is still a change.
    func testKeysAddedAfterACheckpointAreNoChangeAtTheirDefaults() throws {
        let current = try ConfigLoader.yaml(try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: []))
        let saved = current.split(separator: "\n").filter { !$0.contains("images: fashion-mnist") && !$0.contains("text: shakespeare") }
            .joined(separator: "\n")
        XCTAssertNotEqual(saved, current)
        let defaults = try ConfigLoader.yaml(ExperimentConfig())
        XCTAssertEqual(try ConfigChange.between(saved: saved, current: current, defaults: defaults), [])
        XCTAssertEqual(try ConfigChange.between(saved: saved, current: current).map(\.key).sorted(), ["data.images", "data.text"],
                       "without the defaults both count as changes")
        let moved = current.replacingOccurrences(of: "images: fashion-mnist", with: "images: mine.jsonl")
        XCTAssertEqual(try ConfigChange.between(saved: saved, current: moved, defaults: defaults),
                       [ConfigChange(key: "data.images", old: "(absent)", new: "mine.jsonl")])
    }

    // MARK: Text

    func testTextFoldersAndJSONLinesSplitAsDocumented() throws {
        let root = try temporaryDirectory()
        try FileManager.default.createDirectory(atPath: root + "/texts", withIntermediateDirectories: true)
        for (name, text) in [("b", "Second.\r\n"), ("a", "\n\nFirst."), ("c", "Third.")] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: "\(root)/texts/\(name).txt"))
        }
        try Data("ignored".utf8).write(to: URL(fileURLWithPath: root + "/texts/notes.md"))
        let folder = try TextCorpus.load(root + "/texts")
        XCTAssertEqual(folder.training.map(\.name), ["a", "b"])
        XCTAssertEqual(folder.trainingText, "First.\n\nSecond.")
        XCTAssertEqual(folder.heldOut.map(\.name), ["c"], "with fewer than 6 documents the last is held out")

        let lines = (0..<12).map { #"{"text": "document \#($0)"}"# }
        try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: root + "/texts.jsonl"))
        let jsonl = try TextCorpus.load(root + "/texts.jsonl")
        XCTAssertEqual(jsonl.heldOut.map(\.text), ["document 5"], "line i held out when i % 10 == 5")
        XCTAssertEqual(jsonl.training.count, 11)

        let split = [#"{"text": "one", "split": "train"}"#, #"{"text": "two", "split": "test"}"#, #"{"text": "three", "split": "train"}"#]
        try Data(split.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: root + "/split.jsonl"))
        XCTAssertEqual(try TextCorpus.load(root + "/split.jsonl").heldOut.map(\.text), ["two"])

        for (content, expected) in [(#"{"text": "x", "lang": "en"}"# + "\n" + #"{"text": "y"}"#, "split.jsonl:1: unknown key lang"),
                                    (#"{"text": "x"}"# + "\n" + #"{"text": ""}"#, "split.jsonl:2: \"text\" must be a non-empty string"),
                                    (#"{"text": "x"}"#, "needs at least 2"),
                                    (#"{"text": "x", "split": "test"}"# + "\n" + #"{"text": "y", "split": "test"}"#, "at least one \"train\"")] {
            try Data(content.utf8).write(to: URL(fileURLWithPath: root + "/split.jsonl"))
            XCTAssertThrowsError(try TextCorpus.load(root + "/split.jsonl")) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        try Data([0xff, 0xfe, 0x00]).write(to: URL(fileURLWithPath: root + "/texts/d.txt"))
        XCTAssertThrowsError(try TextCorpus.load(root + "/texts")) { XCTAssertTrue("\($0)".contains("d.txt is not UTF-8"), "\($0)") }
        XCTAssertThrowsError(try TextCorpus.load(root + "/nowhere")) { XCTAssertTrue("\($0)".contains("does not exist"), "\($0)") }
        XCTAssertThrowsError(try TextCorpus.load(root + "/texts/a.txt")) { XCTAssertTrue("\($0)".contains("not .jsonl"), "\($0)") }
    }

    // MARK: Folders against the built-in route

    /// `fusion data export` writes 2,000 training and 200 test images with their captions and every
    /// play; a run from those folders logs the same numbers, bit for bit, as the built-in route with
    /// the same seed (codes for Chameleon, latents for Transfusion), and trains the same tokenizer.
    func testExportedFoldersTrainLikeTheBuiltInData() throws {
        let root = try temporaryDirectory()
        let export = try FusionBinary.run(["data", "export", "--out", root + "/export"])
        XCTAssertEqual(export.status, 0, export.output)
        let manifestLines = try String(contentsOfFile: root + "/export/manifest.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(manifestLines.count, 2_200)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/export/text").count, 42)
        let again = try FusionBinary.run(["data", "export", "--out", root + "/export"])
        XCTAssertNotEqual(again.status, 0, "an export does not write over another")
        XCTAssertTrue(again.output.contains("exists already"), again.output)

        let folders = ["data.images=\(root)/export/manifest.jsonl", "data.text=\(root)/export/text",
                       "data.classes=[\(FashionMNIST.classNames.map { "'\($0)'" }.joined(separator: ", "))]"]
        for recipe in ["chameleon", "transfusion"] {
            let overrides = RunFaultTests.tinyOverrides(recipe: recipe, cache: root + "/cache")
            var outcomes: [[String: [Double]]] = []
            for (index, extra) in [[], folders].enumerated() {
                let config = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: overrides + extra)
                let directory = "\(root)/\(recipe)-\(index)"
                try ExperimentRun.run(config, yaml: try ConfigLoader.yaml(config), directory: directory, overwrite: false, resume: false)
                outcomes.append(try RunFaultTests.outcome(of: directory))
            }
            XCTAssertEqual(outcomes[0].keys.sorted(), outcomes[1].keys.sorted(), recipe)
            XCTAssertTrue(outcomes[0].keys.contains("log/eval/fd_fmnist") && outcomes[0].keys.contains("log/eval/caption_accuracy"))
            let differing = outcomes[0].keys.sorted().filter { outcomes[0][$0]!.map(\.bitPattern) != outcomes[1][$0]?.map(\.bitPattern) }
            XCTAssertEqual(differing, [], "\(recipe): these differ between the built-in and the folder route")
        }
        let tokenizers = try FileManager.default.contentsOfDirectory(atPath: root + "/cache").filter { $0.hasPrefix("tokenizer") }
        XCTAssertEqual(tokenizers.count, 1, "both routes train the tokenizer on the same texts: \(tokenizers)")
    }

    // MARK: A colour folder end to end

    /// 96 coloured renderings (a Fashion-MNIST image tinted in one of three colours), captioned with
    /// colour and class: a 3-channel autoencoder trains on them with `fusion autoencoder train --images`,
    /// and a run trains, evaluates and logs colour samples; the reference-classifier metrics are not
    /// computed on colour images, and the log says so.
    func testAColourFolderTrainsEndToEnd() throws {
        let root = try temporaryDirectory()
        let source = try FashionMNIST.load(.test)
        let colours: [(String, [Float])] = [("red", [1, 0.2, 0.1]), ("green", [0.2, 0.9, 0.2]), ("blue", [0.2, 0.3, 1])]
        try FileManager.default.createDirectory(atPath: root + "/images", withIntermediateDirectories: true)
        var lines: [String] = []
        for n in 0..<96 {
            let (colour, tint) = colours[n % 3]
            var picture = Image8(width: 32, height: 32, channels: 3, repeating: 0)
            for y in 0..<32 { for x in 0..<32 { for c in 0..<3 {
                picture[x: x, y: y, channel: c] = UInt8((source.images.data[n * 1024 + y * 32 + x] * tint[c] * 255).rounded())
            } } }
            try PNG.write(picture, to: "\(root)/images/\(n).png", overwrite: false)
            let label = Int(source.labels[n])
            lines.append(#"{"image": "images/\#(n).png", "caption": "a \#(colour) \#(FashionMNIST.classNames[label])", "label": \#(label)}"#)
        }
        try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: root + "/manifest.jsonl"))

        let settings = #"{"kind": "vq", "imageChannels": 3, "channels": 8, "codebookSize": 64, "codeDimension": 8, "steps": 6, "batchSize": 8, "logEvery": 3}"#
        try Data(settings.utf8).write(to: URL(fileURLWithPath: root + "/vq.json"))
        let autoencoder = try FusionBinary.run(["autoencoder", "train", root + "/vq.json", "--images", root + "/manifest.jsonl", "--out", root + "/vq"])
        XCTAssertEqual(autoencoder.status, 0, autoencoder.output)
        XCTAssertEqual(try PNG.read(root + "/vq/reconstructions.png").channels, 3)

        let names = FashionMNIST.classNames.map { "'\($0)'" }.joined(separator: ", ")
        let overrides = RunFaultTests.tinyOverrides(recipe: "chameleon", cache: root + "/cache")
            + ["data.images=\(root)/manifest.jsonl", "data.classes=[\(names)]", "data.test_share=0.2",
               "autoencoder.codes=\(root)/vq/weights.h5"]
        let run = try FusionBinary.run(["train", "configs/tiny.yaml"] + overrides + ["--out", root + "/run"])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("fd_fmnist, kid_fmnist: not computed"), run.output)
        let log = try HDF5File.open(root + "/run/log.h5")
        let group = try log.root.group("runs/tiny")
        XCTAssertTrue(try group.exists("eval/caption_accuracy"))
        XCTAssertTrue(try group.exists("eval/text_ppl"))
        XCTAssertFalse(try group.exists("eval/fd_fmnist"))
        XCTAssertFalse(try group.exists("eval/t2i_accuracy"))
        XCTAssertTrue(try group.stringAttribute("image_metrics").contains("t2i_accuracy: not computed"))
        let samples = try group.dataset("samples/step12")
        XCTAssertEqual(try samples.shape, [8, 3, 32, 32])
        let prompts = try samples.stringAttribute("prompts").split(separator: "\n")
        XCTAssertEqual(prompts.count, 8)
        XCTAssertTrue(prompts.allSatisfy { ["red", "green", "blue"].contains($0.split(separator: " ")[1]) }, "\(prompts)")
        try log.close()
        XCTAssertEqual(try PNG.read(root + "/run/samples-step12.png").channels, 3)

        // A reference classifier of the colour images gives the run fd_colours, kid_colours and t2i_accuracy.
        let reference = try FusionBinary.run(["reference", "train", "--images", root + "/manifest.jsonl", "--channels", "3",
                                              "--classes", FashionMNIST.classNames.joined(separator: ","), "--name", "colours",
                                              "--out", root + "/reference", "epochs=1", "batch_size=16", "log_every=2"])
        XCTAssertEqual(reference.status, 0, reference.output)  // 4 steps, under the default 200 of warm-up
        let badName = try FusionBinary.run(["reference", "train", "--images", root + "/manifest.jsonl", "--name", "colours_n", "--out", root + "/x"])
        XCTAssertNotEqual(badName.status, 0)
        XCTAssertTrue(badName.output.contains("not ending in _n or _std"), badName.output)
        XCTAssertTrue(reference.output.contains("data.reference=\(root)/reference/classifier.h5"), reference.output)
        let measured = try FusionBinary.run(["train", "configs/tiny.yaml"] + overrides
                                            + ["data.reference=\(root)/reference/classifier.h5", "--out", root + "/measured"])
        XCTAssertEqual(measured.status, 0, measured.output)
        let eval = try HDF5File.open(root + "/measured/log.h5").root.group("runs/tiny/eval")
        for name in ["fd_colours", "fd_colours_n", "kid_colours", "t2i_accuracy", "caption_accuracy"] {
            XCTAssertTrue(try eval.exists(name), name)
        }
        XCTAssertFalse(try eval.exists("fd_fmnist"))
        XCTAssertEqual(try eval.dataset("fd_colours_n").read(as: Double.self).last, 8)

        // The report shows the run's own distance and labels each sample with its prompt.
        let report = try FusionBinary.run(["report", root + "/measured/log.h5", "--out", root + "/report"])
        XCTAssertEqual(report.status, 0, report.output)
        let page = try String(contentsOfFile: root + "/report/report.html", encoding: .utf8)
        XCTAssertTrue(page.contains("<th>fd_colours</th>") && page.contains("<th>kid_colours</th>"))
        XCTAssertEqual(page.components(separatedBy: "<figcaption>a ").count - 1, 8, "8 samples, each captioned with its prompt")
        XCTAssertTrue(try String(contentsOfFile: root + "/report/report.md", encoding: .utf8).contains("| fd_colours |"))
    }
}
