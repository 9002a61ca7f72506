import Foundation
import XCTest
@testable import Fusion

// CheckpointTests: checkpoints (Sources/Fusion/IO/Checkpoint.swift) round-trip exactly, read the same
// with h5dump (the independent reader; helpers in HDF5Tests.swift), refuse foreign and damaged files,
// and restore strictly: a missing, extra or misshapen tensor is an error naming it and both shapes.
// Comparisons are bit-exact: float32 values are stored as float32, so nothing may change at all.

final class HDF5CheckpointTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("checkpoint-tests")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Deterministic pseudo-random values (SplitMix64), with the awkward float32 values mixed in.
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        let special: [Float] = [-0.0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        return (0..<count).map { i in
            if i < special.count && seed == 1 { return special[i] }
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(Double(z >> 11) / Double(1 << 53) * 2 - 1) * 0.02
        }
    }

    /// A small model's parameters: (D) = 8, (F) = 16, (V) = 10.
    func parameters(seed: UInt64) -> [String: Tensor] {
        [
            "embed.weight": Tensor(values(10 * 8, seed: seed), shape: [10, 8]),         // (V, D)
            "blocks.0.attn.wq": Tensor(values(8 * 8, seed: seed + 1), shape: [8, 8]),     // (D, D)
            "blocks.0.mlp.w1": Tensor(values(8 * 16, seed: seed + 2), shape: [8, 16]),    // (D, F)
            "blocks.0.ln1.gain": Tensor(values(8, seed: seed + 3), shape: [8]),           // (D)
            "logit_scale": Tensor(values(1, seed: seed + 4), shape: []),                  // scalar
        ]
    }

    func sample() -> Checkpoint {
        let weights = parameters(seed: 1)
        var moments: [String: Tensor] = [:]
        for (name, tensor) in weights {
            moments["m." + name] = Tensor(values(tensor.count, seed: 100), shape: tensor.shape)
            moments["v." + name] = Tensor(values(tensor.count, seed: 200).map { $0 * $0 }, shape: tensor.shape)
        }
        return Checkpoint(step: 12_345, tensors: weights, optimizerState: moments,
                          rngState: [0, 1, UInt64.max, 0x8000_0000_0000_0000, 0xDEAD_BEEF_CAFE_F00D],
                          metadata: ["config": "model:\n  width: 8\n  note: \"λ ✓\"\n", "git_commit": "0123abc",
                                     "recipe": "transfusion"])
    }

    // MARK: Round trip

    func testRoundTripIsBitExact() throws {
        let file = path("step-12345.h5")
        let saved = sample()
        try saved.write(to: file)
        let loaded = try Checkpoint.read(from: file)

        XCTAssertEqual(loaded.step, 12_345)
        XCTAssertEqual(loaded.rngState, saved.rngState)
        XCTAssertEqual(loaded.metadata, saved.metadata)
        XCTAssertEqual(Set(loaded.tensors.keys), Set(saved.tensors.keys))
        XCTAssertEqual(Set(loaded.optimizerState.keys), Set(saved.optimizerState.keys))
        for (name, tensor) in saved.tensors {
            let back = try XCTUnwrap(loaded.tensors[name])
            XCTAssertEqual(back.shape, tensor.shape, name)
            XCTAssertEqual(back.name, name)
            assertBitIdentical(back.array, tensor.array, name)
        }
        for (name, tensor) in saved.optimizerState {
            let back = try XCTUnwrap(loaded.optimizerState[name])
            XCTAssertEqual(back.shape, tensor.shape, name)
            assertBitIdentical(back.array, tensor.array, name)
        }
        // No temporary file is left beside the checkpoint.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["step-12345.h5"])
    }

    func testH5DumpReadsTheCheckpoint() throws {
        let file = path("dump.h5")
        let saved = sample()
        try saved.write(to: file)

        let kind = try H5Dump.attribute("/kind", in: file)
        XCTAssertEqual(kind.field("STRSIZE"), "H5T_VARIABLE")
        XCTAssertEqual(kind.string, "fusion-checkpoint")
        XCTAssertEqual(try H5Dump.attribute("/format_version", in: file).values, ["1"])
        XCTAssertEqual(try H5Dump.attribute("/step", in: file).values, ["12345"])

        let wq = try H5Dump.dataset("/tensors/blocks.0.attn.wq", in: file)
        XCTAssertEqual(wq.datatype, "H5T_IEEE_F32LE")
        XCTAssertEqual(wq.dims, [8, 8])
        assertBitIdentical(wq.values.compactMap { Float($0) }, try XCTUnwrap(saved.tensors["blocks.0.attn.wq"]).array,
                           "blocks.0.attn.wq via h5dump")
        let scale = try H5Dump.dataset("/tensors/logit_scale", in: file)
        XCTAssertEqual(scale.dataspace, "SCALAR")
        let moment = try H5Dump.dataset("/optimizer_state/m.embed.weight", in: file)
        XCTAssertEqual(moment.dims, [10, 8])
        assertBitIdentical(moment.values.compactMap { Float($0) },
                           try XCTUnwrap(saved.optimizerState["m.embed.weight"]).array, "m.embed.weight via h5dump")

        let rng = try H5Dump.dataset("/rng_state", in: file)
        XCTAssertEqual(rng.datatype, "H5T_STD_U64LE")
        XCTAssertEqual(rng.values.compactMap { UInt64($0) }, saved.rngState)
        XCTAssertEqual(try H5Dump.attribute("/metadata/config", in: file).string, saved.metadata["config"])
        XCTAssertEqual(try H5Dump.attribute("/metadata/git_commit", in: file).string, "0123abc")

        let header = try H5Dump.header(of: file)
        for name in saved.tensors.keys {
            XCTAssertTrue(header.contains("DATASET \"\(name)\""), "h5dump -H lacks \(name)")
        }
    }

    func testEmptyCheckpointRoundTrips() throws {
        let file = path("empty.h5")
        try Checkpoint(step: 0, tensors: [:]).write(to: file)
        let loaded = try Checkpoint.read(from: file)
        XCTAssertEqual(loaded.step, 0)
        XCTAssertTrue(loaded.tensors.isEmpty)
        XCTAssertTrue(loaded.optimizerState.isEmpty)
        XCTAssertEqual(loaded.rngState, [])
        XCTAssertEqual(loaded.metadata, [:])
    }

    func testWriteRefusesToOverwriteUnlessAsked() throws {
        let file = path("ckpt.h5")
        try Checkpoint(step: 1, tensors: parameters(seed: 1)).write(to: file)
        assertThrows(try Checkpoint(step: 2, tensors: [:]).write(to: file), containing: [file, "overwrite: true"])
        XCTAssertEqual(try Checkpoint.read(from: file).step, 1)
        try Checkpoint(step: 2, tensors: [:]).write(to: file, overwrite: true)
        let replaced = try Checkpoint.read(from: file)
        XCTAssertEqual(replaced.step, 2)
        XCTAssertTrue(replaced.tensors.isEmpty)
    }

    func testNamesThatCannotBeStoredAreRefused() throws {
        let file = path("names.h5")
        let tensor = Tensor(zeros: [2])
        assertThrows(try Checkpoint(step: 0, tensors: ["blocks/0/wq": tensor]).write(to: file),
                     containing: ["blocks/0/wq", "\"/\""])
        assertThrows(try Checkpoint(step: 0, tensors: ["": tensor]).write(to: file), containing: ["empty"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: file))
    }

    // MARK: Strict restore

    func testRestoreCopiesIntoTheExistingBuffers() throws {
        let checkpoint = sample()
        let model = parameters(seed: 50)   // same names and shapes, other values
        let buffers = model.mapValues { $0.data }
        try checkpoint.restore(into: model)
        for (name, tensor) in model {
            XCTAssertEqual(tensor.data, buffers[name], "\(name) got a new buffer")
            assertBitIdentical(tensor.array, try XCTUnwrap(checkpoint.tensors[name]).array, name)
        }
        let state = checkpoint.optimizerState.mapValues { Tensor(zeros: $0.shape) }
        try checkpoint.restoreOptimizerState(into: state)
        for (name, tensor) in state {
            assertBitIdentical(tensor.array, try XCTUnwrap(checkpoint.optimizerState[name]).array, name)
        }
    }

    func testRestoreRefusesAMissingParameter() throws {
        let checkpoint = sample()
        var model = parameters(seed: 50)
        model["blocks.1.attn.wq"] = Tensor(zeros: [8, 8])
        let before = model.mapValues { $0.array }
        assertThrows(try checkpoint.restore(into: model),
                     containing: ["blocks.1.attn.wq", "missing from the checkpoint", "expected shape [8, 8]",
                                  "found none"])
        // Nothing was copied: a failed restore leaves the model as it was.
        for (name, tensor) in model { assertBitIdentical(tensor.array, before[name] ?? [], name) }
    }

    func testRestoreRefusesAnUnknownParameter() throws {
        var checkpoint = sample()
        checkpoint.tensors["head.bias"] = Tensor(zeros: [10])
        assertThrows(try checkpoint.restore(into: parameters(seed: 50)),
                     containing: ["head.bias", "found shape [10]", "not in the model", "expected none"])
    }

    func testRestoreRefusesAShapeMismatch() throws {
        let checkpoint = sample()
        var model = parameters(seed: 50)
        model["blocks.0.mlp.w1"] = Tensor(zeros: [8, 32])
        assertThrows(try checkpoint.restore(into: model),
                     containing: ["blocks.0.mlp.w1", "expected shape [8, 32]", "found [8, 16]"])
    }

    func testRestoreListsEveryProblemAtOnce() throws {
        var checkpoint = sample()
        checkpoint.tensors["extra"] = Tensor(zeros: [3])
        var model = parameters(seed: 50)
        model["missing"] = Tensor(zeros: [2])
        model["logit_scale"] = Tensor(zeros: [1])
        do {
            try checkpoint.restore(into: model)
            XCTFail("restore accepted a mismatched checkpoint")
        } catch CheckpointError.mismatch(_, let problems) {
            XCTAssertEqual(problems, [.unexpected(name: "extra", foundShape: [3]),
                                      .shapeMismatch(name: "logit_scale", expected: [1], found: []),
                                      .missing(name: "missing", expectedShape: [2])])
        }
    }

    func testRestoreThroughAFileIsExact() throws {
        let file = path("through-file.h5")
        let checkpoint = sample()
        try checkpoint.write(to: file)
        let model = parameters(seed: 50)
        try Checkpoint.read(from: file).restore(into: model)
        for (name, tensor) in model {
            assertBitIdentical(tensor.array, try XCTUnwrap(checkpoint.tensors[name]).array, name)
        }
    }

    func testCheckpointsLeakNoHandles() throws {
        let file = path("leak.h5")
        try sample().write(to: file)
        let before = hdf5OpenObjectCounts()
        try sample().write(to: file, overwrite: true)
        let loaded = try Checkpoint.read(from: file)
        try loaded.restore(into: parameters(seed: 3))
        _ = try? Checkpoint.read(from: path("absent.h5"))
        XCTAssertEqual(hdf5OpenObjectCounts(), before, "identifiers leaked")
    }

    // MARK: Foreign and damaged files

    func testForeignHDF5FileIsRefused() throws {
        let results = path("results.h5")
        do {
            let h5 = try HDF5File.create(results)
            try h5.root.createGroup("runs/a/train")
            try h5.root.setAttribute("schema_version", 1)
            try h5.close()
        }
        assertThrows(try Checkpoint.read(from: results),
                     containing: [results, "not a Fusion checkpoint", "no 'kind' attribute", "fusion-checkpoint"])

        let other = path("other-kind.h5")
        do {
            let h5 = try HDF5File.create(other)
            try h5.root.setAttribute("kind", "fusion-results")
            try h5.close()
        }
        assertThrows(try Checkpoint.read(from: other),
                     containing: [other, "not a Fusion checkpoint", "\"fusion-results\""])

        let numeric = path("numeric-kind.h5")
        do {
            let h5 = try HDF5File.create(numeric)
            try h5.root.setAttribute("kind", 3)
            try h5.close()
        }
        assertThrows(try Checkpoint.read(from: numeric),
                     containing: [numeric, "not a Fusion checkpoint", "not a string"])
    }

    func testNewerFormatVersionIsRefused() throws {
        let file = path("future.h5")
        try sample().write(to: file)
        do {
            let h5 = try HDF5File.open(file, writable: true)
            try h5.root.setAttribute("format_version", 99)
            try h5.close()
        }
        assertThrows(try Checkpoint.read(from: file), containing: [file, "format version 99", "update Fusion"])
    }

    func testNonHDF5AndTruncatedCheckpointsAreRefused() throws {
        let text = path("ckpt.txt")
        try "not a checkpoint\n".write(toFile: text, atomically: true, encoding: .utf8)
        assertThrows(try Checkpoint.read(from: text), containing: [text, "not an HDF5 file"])

        let file = path("truncated.h5")
        try sample().write(to: file)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: file))
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()
        assertThrows(try Checkpoint.read(from: file), containing: [file, "truncated or damaged"])

        assertThrows(try Checkpoint.read(from: path("absent.h5")), containing: [path("absent.h5"), "no such file"])
    }
}
