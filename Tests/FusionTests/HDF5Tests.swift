import Foundation
import XCTest
@testable import Fusion

// HDF5Tests: the HDF5 wrapper (Sources/Fusion/IO/HDF5.swift), checked against an independent reader.
//
// Every file is read back twice: with the wrapper, and with h5dump, the HDF5 project's own command-line
// reader (run as a subprocess, its text output parsed here). Values are compared exactly, not within a
// tolerance: they are stored in the binary format they are written from (float32 stays float32), and
// h5dump prints them with 17 significant digits (-m %.17g), which round-trips any float64 and so any
// float32. h5dump comes from Debian's hdf5-tools; when it is missing the tests fail and say so.

// MARK: - Test helpers (shared with CheckpointTests)

/// h5dump run as a subprocess, and its output parsed.
enum H5Dump {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "h5dump (Debian package hdf5-tools) was not found on PATH or in /usr/bin; run scripts/setup to install it"
        }
    }

    struct Failed: Error, CustomStringConvertible {
        let arguments: [String]
        let status: Int32
        let output: String
        var description: String { "h5dump \(arguments.joined(separator: " ")) exited with \(status):\n\(output)" }
    }

    static func executable() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
        for directory in directories where FileManager.default.isExecutableFile(atPath: directory + "/h5dump") {
            return directory + "/h5dump"
        }
        throw Missing()
    }

    /// h5dump's output (stdout and stderr together); throws if it exits with an error.
    static func run(_ arguments: [String]) throws -> String {
        let result = try runProgram(try executable(), arguments)
        guard result.status == 0 else { throw Failed(arguments: arguments, status: result.status, output: result.output) }
        return result.output
    }

    /// One attribute (`/group/name`, or `/name` on the root), with values printed without indices.
    static func attribute(_ path: String, in file: String) throws -> H5DumpObject {
        H5DumpObject(text: try run(["-y", "-w", "0", "-m", "%.17g", "-a", path, file]))
    }

    /// One dataset, with values printed without indices.
    static func dataset(_ path: String, in file: String) throws -> H5DumpObject {
        H5DumpObject(text: try run(["-y", "-w", "0", "-m", "%.17g", "-d", path, file]))
    }

    /// The structure of a whole file: groups, datasets, types and shapes, attributes; no data.
    static func header(of file: String) throws -> String { try run(["-H", file]) }
}

/// The first object in an h5dump listing: its DATATYPE, DATASPACE and DATA block.
struct H5DumpObject {
    let text: String
    private var lines: [String] { text.components(separatedBy: "\n") }

    /// What follows DATATYPE, e.g. "H5T_IEEE_F32LE" or "H5T_STRING {".
    var datatype: String { value(after: "DATATYPE") }
    /// What follows DATASPACE, e.g. "SCALAR" or "SIMPLE { ( 2, 3 ) / ( 2, 3 ) }".
    var dataspace: String { value(after: "DATASPACE") }

    /// The current dimensions, or nil for a scalar.
    var dims: [Int]? { extents.map { $0.0.compactMap { Int($0) } } }
    /// The maximum dimensions as printed ("3", "H5S_UNLIMITED"), or nil for a scalar.
    var maxDims: [String]? { extents?.1 }

    private var extents: ([String], [String])? {
        guard dataspace.hasPrefix("SIMPLE") else { return nil }
        let groups = dataspace.components(separatedBy: "(").dropFirst().map {
            $0.prefix { $0 != ")" }.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        guard groups.count == 2 else { return nil }
        return (groups[0], groups[1])
    }

    /// A field inside the DATATYPE block of a string, e.g. field("STRSIZE") = "H5T_VARIABLE".
    func field(_ name: String) -> String? {
        lines.map { $0.trimmingCharacters(in: .whitespaces) }
            .first { $0.hasPrefix(name + " ") }
            .map { String($0.dropFirst(name.count + 1).dropLast()) }   // drop the trailing ";"
    }

    /// The text inside the first DATA { … } block.
    var dataBlock: String {
        let all = lines
        guard let start = all.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "DATA {" }) else {
            return ""
        }
        let body = all[(start + 1)...].prefix { $0.trimmingCharacters(in: .whitespaces) != "}" }
        return body.joined(separator: "\n")
    }

    /// The numbers in the DATA block, as printed.
    var values: [String] {
        dataBlock.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map(String.init)
    }

    /// The string in the DATA block, undoing two things h5dump does when printing one:
    /// - each byte ≥ 0x80 is printed as a sign-extended octal escape (é = \37777777703\37777777651);
    ///   those are decoded back into the UTF-8 bytes they stand for;
    /// - after each newline in the string, h5dump indents the next line to line up under the value:
    ///   the opening line's indent plus 5 (the width of the "(0): " index that -y leaves out).
    var string: String? {
        let block = dataBlock
        guard let open = block.firstIndex(of: "\""), let close = block.lastIndex(of: "\""), open < close else {
            return nil
        }
        let openingIndent = block[..<open].reversed().prefix { $0 == " " }.count
        let continuation = "\n" + String(repeating: " ", count: openingIndent + 5)
        let printed = block[block.index(after: open)..<close].replacingOccurrences(of: continuation, with: "\n")
        var bytes: [UInt8] = []
        var characters = Array(printed.utf8)[...]
        while let byte = characters.popFirst() {
            if byte == UInt8(ascii: "\\"), let first = characters.first, (48...55).contains(first) {
                var code: UInt64 = 0
                while let digit = characters.first, (48...55).contains(digit) {
                    code = code * 8 + UInt64(digit - 48)
                    characters.removeFirst()
                }
                bytes.append(UInt8(truncatingIfNeeded: code))
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func value(after keyword: String) -> String {
        for line in lines {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix(keyword + " ") {
                return trimmed.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
            }
        }
        return ""
    }
}

/// A fresh directory per test, removed afterwards.
func makeTemporaryDirectory(_ label: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("fusion-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Asserts that `body` throws an error whose message contains every one of `fragments`, and prints
/// the message when it does not.
func assertThrows<T>(_ body: @autoclosure () throws -> T, containing fragments: [String],
                     file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected an error containing \(fragments), but nothing was thrown", file: file, line: line)
    } catch {
        let message = String(describing: error)
        for fragment in fragments where !message.contains(fragment) {
            XCTFail("error message lacks \"\(fragment)\":\n  \(message)", file: file, line: line)
        }
    }
}

/// Asserts that two float arrays are identical bit for bit (NaN payloads included), printing the
/// first differing values and the count when they are not.
func assertBitIdentical(_ actual: [Float], _ expected: [Float], _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        return XCTFail("\(what): \(actual.count) values, expected \(expected.count)", file: file, line: line)
    }
    let differing = zip(actual, expected).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
    guard !differing.isEmpty else { return }
    let first = differing.prefix(5).map { "[\($0.offset)] \($0.element.0) vs \($0.element.1)" }
    XCTFail("\(what): \(differing.count) values differ; first: \(first.joined(separator: ", "))",
            file: file, line: line)
}

// MARK: - Tests

final class HDF5Tests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("hdf5-tests")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    // MARK: Attributes

    func testAttributesOfEachTypeRoundTrip() throws {
        let file = path("attributes.h5")
        let config = "model:\n  width: 256\n  heads: 4\nname: \"héllo ✓\"\n"
        do {
            let h5 = try HDF5File.create(file)
            try h5.root.setAttribute("schema_version", 3)
            try h5.root.setAttribute("commit", "0123abc")
            let run = try h5.root.createGroup("runs/a")
            try run.setAttribute("config", config)
            try run.setAttribute("recipe", "transfusion", fixedLength: true)
            try run.setAttribute("seed", Int64.min)
            try run.setAttribute("lr", 3e-4)
            try run.setAttribute("parameter_counts", [Int64.max, 0, -7])
            try run.setAttribute("betas", [0.9, 0.95, -1e-300])
            try run.setAttribute("no_values", [Double]())
            let loss = try run.createExtendibleDataset("train/loss", of: Double.self)
            try loss.setAttribute("unit", "nats")
            try loss.setAttribute("every", 10)
            try h5.close()
        }

        // The wrapper reads each back with its getter.
        let h5 = try HDF5File.open(file)
        XCTAssertEqual(try h5.root.intAttribute("schema_version"), 3)
        XCTAssertEqual(try h5.root.stringAttribute("commit"), "0123abc")
        let run = try h5.root.group("runs/a")
        XCTAssertEqual(try run.attributeNames,
                       ["betas", "config", "lr", "no_values", "parameter_counts", "recipe", "seed"])
        XCTAssertEqual(try run.stringAttribute("config"), config)
        XCTAssertEqual(try run.stringAttribute("recipe"), "transfusion")
        XCTAssertEqual(try run.int64Attribute("seed"), Int64.min)
        XCTAssertEqual(try run.doubleAttribute("lr"), 3e-4)
        XCTAssertEqual(try run.int64ArrayAttribute("parameter_counts"), [Int64.max, 0, -7])
        XCTAssertEqual(try run.doubleArrayAttribute("betas"), [0.9, 0.95, -1e-300])
        XCTAssertEqual(try run.doubleArrayAttribute("no_values"), [])
        let loss = try run.dataset("train/loss")
        XCTAssertEqual(try loss.stringAttribute("unit"), "nats")
        XCTAssertEqual(try loss.intAttribute("every"), 10)

        // h5dump reads the same types and values.
        let configDump = try H5Dump.attribute("/runs/a/config", in: file)
        XCTAssertEqual(configDump.datatype, "H5T_STRING {")
        XCTAssertEqual(configDump.field("STRSIZE"), "H5T_VARIABLE")   // variable length: h5py reads a str
        XCTAssertEqual(configDump.field("CSET"), "H5T_CSET_UTF8")
        XCTAssertEqual(configDump.dataspace, "SCALAR")
        XCTAssertEqual(configDump.string, config)
        XCTAssertEqual(try H5Dump.attribute("/commit", in: file).string, "0123abc")
        let recipe = try H5Dump.attribute("/runs/a/recipe", in: file)
        XCTAssertEqual(recipe.field("STRSIZE"), "11")
        XCTAssertEqual(recipe.field("CSET"), "H5T_CSET_UTF8")
        XCTAssertEqual(recipe.string, "transfusion")
        let seed = try H5Dump.attribute("/runs/a/seed", in: file)
        XCTAssertEqual(seed.datatype, "H5T_STD_I64LE")
        XCTAssertEqual(seed.dataspace, "SCALAR")
        XCTAssertEqual(seed.values, ["-9223372036854775808"])
        let lr = try H5Dump.attribute("/runs/a/lr", in: file)
        XCTAssertEqual(lr.datatype, "H5T_IEEE_F64LE")
        XCTAssertEqual(lr.values.compactMap(Double.init), [3e-4])
        let counts = try H5Dump.attribute("/runs/a/parameter_counts", in: file)
        XCTAssertEqual(counts.datatype, "H5T_STD_I64LE")
        XCTAssertEqual(counts.dims, [3])
        XCTAssertEqual(counts.values, ["9223372036854775807", "0", "-7"])
        let betas = try H5Dump.attribute("/runs/a/betas", in: file)
        XCTAssertEqual(betas.datatype, "H5T_IEEE_F64LE")
        XCTAssertEqual(betas.dims, [3])
        XCTAssertEqual(betas.values.compactMap(Double.init), [0.9, 0.95, -1e-300])
        XCTAssertEqual(try H5Dump.attribute("/runs/a/no_values", in: file).dims, [0])
        XCTAssertEqual(try H5Dump.attribute("/runs/a/train/loss/unit", in: file).string, "nats")
    }

    func testNonASCIIStringsSurviveBothReaders() throws {
        let file = path("unicode.h5")
        let text = "héllo ✓ λ→∞"
        let h5 = try HDF5File.create(file)
        try h5.root.setAttribute("variable", text)
        try h5.root.setAttribute("fixed", text, fixedLength: true)
        try h5.close()
        let again = try HDF5File.open(file)
        XCTAssertEqual(try again.root.stringAttribute("variable"), text)
        XCTAssertEqual(try again.root.stringAttribute("fixed"), text)
        XCTAssertEqual(try H5Dump.attribute("/variable", in: file).string, text)
        let fixed = try H5Dump.attribute("/fixed", in: file)
        XCTAssertEqual(fixed.field("STRSIZE"), "\(text.utf8.count)")   // bytes, not characters
        XCTAssertEqual(fixed.string, text)
    }

    func testStringAttributeLargerThan64KiB() throws {
        // A resolved config can be long; HDF5's compact attribute storage stops at 64 KiB, and the
        // 1.8 object format the wrapper asks for moves larger attributes to dense storage.
        let file = path("large.h5")
        let yaml = (0..<20_000).map { "key\($0): \($0 * 7)" }.joined(separator: "\n")
        XCTAssertGreaterThan(yaml.utf8.count, 200_000)
        let h5 = try HDF5File.create(file)
        try h5.root.setAttribute("config", yaml)
        try h5.close()
        XCTAssertEqual(try HDF5File.open(file).root.stringAttribute("config"), yaml)
        XCTAssertEqual(try H5Dump.attribute("/config", in: file).dataBlock.count > 200_000, true)
    }

    func testReplacingAnAttributeKeepsOnlyTheNewValue() throws {
        let h5 = try HDF5File.create(path("replace.h5"))
        try h5.root.setAttribute("status", "running")
        try h5.root.setAttribute("status", 1)
        XCTAssertEqual(try h5.root.intAttribute("status"), 1)
        XCTAssertEqual(try h5.root.attributeNames, ["status"])
    }

    func testAttributeGettersThrowWhenMissingOrOfAnotherType() throws {
        let file = path("getters.h5")
        let h5 = try HDF5File.create(file)
        let run = try h5.root.createGroup("runs/a")
        try run.setAttribute("seed", 7)
        try run.setAttribute("recipe", "chameleon")
        try run.setAttribute("betas", [0.9, 0.95])
        try run.setAttribute("lr", 0.001)

        assertThrows(try run.intAttribute("sede"), containing: [file, "/runs/a", "no attribute 'sede'", "'seed'"])
        assertThrows(try run.stringAttribute("seed"), containing: [file, "'seed'", "int64", "not a single string"])
        assertThrows(try run.doubleAttribute("seed"), containing: ["'seed'", "int64", "float"])
        assertThrows(try run.int64Attribute("recipe"), containing: ["'recipe'", "string", "integer"])
        assertThrows(try run.doubleAttribute("betas"),
                     containing: ["'betas'", "array of shape [2]", "read it with doubleArrayAttribute"])
        assertThrows(try run.doubleArrayAttribute("lr"), containing: ["'lr'", "float64 scalar", "array"])
        assertThrows(try run.int64Attribute("lr"), containing: ["'lr'", "float64", "integer"])
    }

    // MARK: Datasets

    func testFixedDatasetsOfEachTypeRoundTrip() throws {
        let file = path("datasets.h5")
        // Float32 values chosen to exercise every corner: -0, ±inf, NaN, a subnormal, the extremes.
        let weights: [Float] = [1, 0.1, -0.0, .infinity, -.infinity, .nan, Float.leastNonzeroMagnitude,
                                Float.greatestFiniteMagnitude, -1.5 * .leastNormalMagnitude / 8, 3.14159274,
                                2.5e-8, -123456.789]
        let tensor = Tensor(weights, shape: [2, 3, 2])
        let tokens: [Int32] = [0, 1, Int32.max, Int32.min, -1]
        let steps: [Int64] = [Int64.min, -1, 0, Int64.max]
        let pixels: [UInt8] = (0..<48).map { UInt8(($0 * 37) % 256) }   // (H, W, C) = (4, 4, 3)
        let seeds: [Double] = [0.1, -2.5e-300, 1e300]
        do {
            let h5 = try HDF5File.create(file)
            let arrays = try h5.root.createGroup("arrays")
            try arrays.createDataset("weights", tensor: tensor)
            try arrays.createDataset("tokens", values: tokens, shape: [5])
            try arrays.createDataset("steps", values: steps, shape: [2, 2])
            try h5.root.createDataset("runs/a/samples/grid", values: pixels, shape: [4, 4, 3])
            try arrays.createDataset("doubles", values: seeds, shape: [3])
            try arrays.createDataset("scalar", values: [Int64(42)], shape: [])
            try arrays.createDataset("empty", values: [Float](), shape: [0, 3])
            try h5.close()
        }

        let h5 = try HDF5File.open(file)
        let arrays = try h5.root.group("arrays")
        XCTAssertEqual(try arrays.childNames, ["doubles", "empty", "scalar", "steps", "tokens", "weights"])
        let weights5 = try arrays.dataset("weights")
        XCTAssertEqual(weights5.elementType, .float32)
        XCTAssertEqual(try weights5.shape, [2, 3, 2])
        let read = try weights5.readTensor()
        XCTAssertEqual(read.shape, [2, 3, 2])
        assertBitIdentical(read.array, weights, "weights via readTensor")
        assertBitIdentical(try weights5.read(as: Float.self), weights, "weights via read(as:)")
        let into = Tensor(zeros: [2, 3, 2])
        try weights5.read(into: into)
        assertBitIdentical(into.array, weights, "weights via read(into:)")
        XCTAssertEqual(try arrays.dataset("tokens").read(as: Int32.self), tokens)
        let steps5 = try arrays.dataset("steps")
        XCTAssertEqual(try steps5.shape, [2, 2])
        XCTAssertEqual(try steps5.read(as: Int64.self), steps)
        let grid = try h5.root.dataset("runs/a/samples/grid")
        XCTAssertEqual(grid.elementType, .uint8)
        XCTAssertEqual(try grid.shape, [4, 4, 3])
        XCTAssertEqual(try grid.read(as: UInt8.self), pixels)
        XCTAssertEqual(try arrays.dataset("doubles").read(as: Double.self), seeds)
        let scalar = try arrays.dataset("scalar")
        XCTAssertEqual(try scalar.shape, [])
        XCTAssertEqual(try scalar.read(as: Int64.self), [42])
        XCTAssertEqual(try arrays.dataset("empty").shape, [0, 3])
        XCTAssertEqual(try arrays.dataset("empty").readTensor().shape, [0, 3])

        // h5dump: the stored types, shapes and values.
        let weightsDump = try H5Dump.dataset("/arrays/weights", in: file)
        XCTAssertEqual(weightsDump.datatype, "H5T_IEEE_F32LE")
        XCTAssertEqual(weightsDump.dims, [2, 3, 2])
        assertBitIdentical(weightsDump.values.compactMap { Float($0) }, weights, "weights via h5dump")
        let tokensDump = try H5Dump.dataset("/arrays/tokens", in: file)
        XCTAssertEqual(tokensDump.datatype, "H5T_STD_I32LE")
        XCTAssertEqual(tokensDump.values.compactMap { Int32($0) }, tokens)
        let stepsDump = try H5Dump.dataset("/arrays/steps", in: file)
        XCTAssertEqual(stepsDump.datatype, "H5T_STD_I64LE")
        XCTAssertEqual(stepsDump.dims, [2, 2])
        XCTAssertEqual(stepsDump.values.compactMap { Int64($0) }, steps)
        let gridDump = try H5Dump.dataset("/runs/a/samples/grid", in: file)
        XCTAssertEqual(gridDump.datatype, "H5T_STD_U8LE")
        XCTAssertEqual(gridDump.dims, [4, 4, 3])
        XCTAssertEqual(gridDump.values.compactMap { UInt8($0) }, pixels)
        let doublesDump = try H5Dump.dataset("/arrays/doubles", in: file)
        XCTAssertEqual(doublesDump.datatype, "H5T_IEEE_F64LE")
        XCTAssertEqual(doublesDump.values.compactMap { Double($0) }, seeds)
        let scalarDump = try H5Dump.dataset("/arrays/scalar", in: file)
        XCTAssertEqual(scalarDump.dataspace, "SCALAR")
        XCTAssertEqual(scalarDump.values, ["42"])
        XCTAssertEqual(try H5Dump.dataset("/arrays/empty", in: file).dims, [0, 3])
    }

    func testDatasetMisuseThrowsWithTheReason() throws {
        let file = path("misuse.h5")
        let h5 = try HDF5File.create(file)
        let weights = try h5.root.createDataset("weights", values: [Float](repeating: 1, count: 6), shape: [2, 3])
        assertThrows(try weights.read(as: Double.self), containing: [file, "/weights", "float32", "[Float]"])
        assertThrows(try weights.read(into: Tensor(zeros: [3, 2])), containing: ["/weights", "[2, 3]", "[3, 2]"])
        assertThrows(try weights.append([Float(1)]),
                     containing: ["/weights", "fixed shape [2, 3]", "createExtendibleDataset"])
        assertThrows(try h5.root.createDataset("bad", values: [Int32(1), 2, 3], shape: [2, 2]),
                     containing: ["/bad", "3 values", "[2, 2]", "holds 4"])
        assertThrows(try h5.root.createDataset("weights", values: [Int32(1)], shape: [1]),
                     containing: ["/weights", "already exists"])
        let tokens = try h5.root.createDataset("tokens", values: [Int32(5)], shape: [1])
        assertThrows(try tokens.readTensor(), containing: ["/tokens", "int32", "[Int32]"])
    }

    // MARK: Extendible datasets

    func testExtendibleAppendAcrossCallsAndReopening() throws {
        let file = path("log.h5")
        do {
            let h5 = try HDF5File.create(file)
            let train = try h5.root.createGroup("runs/a/train")
            let step = try train.createExtendibleDataset("step", of: Int64.self, chunkSize: 4)
            let loss = try train.createExtendibleDataset("loss", of: Double.self, chunkSize: 4)
            let accuracy = try train.createExtendibleDataset("accuracy", of: Float.self)
            XCTAssertTrue(loss.isExtendible)
            XCTAssertEqual(try loss.shape, [0])
            // Three appends of different lengths, crossing chunk boundaries (chunks of 4).
            try step.append([Int64(0), 10, 20])
            try loss.append([2.5, 2.25, 2.125])
            try step.append([Int64(30)])
            try loss.append([2.0])
            try step.append([Int64]())   // appending nothing is fine
            try step.append([Int64(40), 50])
            try loss.append([1.875, 1.75])
            try accuracy.append([Float(0.25), 0.5])
            XCTAssertEqual(try loss.shape, [6])
            try h5.flush()
            try h5.close()
        }
        do {
            // A resumed run opens the file again and keeps appending.
            let h5 = try HDF5File.open(file, writable: true)
            let train = try h5.root.group("/runs/a/train")
            try train.dataset("step").append([Int64(60), 70])
            try train.dataset("loss").append([1.5, 1.25])
            try h5.close()
        }

        let h5 = try HDF5File.open(file)
        let train = try h5.root.group("runs/a/train")
        XCTAssertEqual(try train.dataset("step").read(as: Int64.self), [0, 10, 20, 30, 40, 50, 60, 70])
        XCTAssertEqual(try train.dataset("loss").read(as: Double.self), [2.5, 2.25, 2.125, 2.0, 1.875, 1.75, 1.5, 1.25])
        XCTAssertEqual(try train.dataset("accuracy").read(as: Float.self), [0.25, 0.5])

        let loss = try H5Dump.dataset("/runs/a/train/loss", in: file)
        XCTAssertEqual(loss.datatype, "H5T_IEEE_F64LE")
        XCTAssertEqual(loss.dims, [8])
        XCTAssertEqual(loss.maxDims, ["H5S_UNLIMITED"])
        XCTAssertEqual(loss.values.compactMap { Double($0) }, [2.5, 2.25, 2.125, 2.0, 1.875, 1.75, 1.5, 1.25])
        let step = try H5Dump.dataset("/runs/a/train/step", in: file)
        XCTAssertEqual(step.datatype, "H5T_STD_I64LE")
        XCTAssertEqual(step.values, ["0", "10", "20", "30", "40", "50", "60", "70"])
        XCTAssertEqual(try H5Dump.dataset("/runs/a/train/accuracy", in: file).datatype, "H5T_IEEE_F32LE")
    }

    func testAppendRefusesTheWrongTypeAndReadOnlyFiles() throws {
        let file = path("append-errors.h5")
        do {
            let h5 = try HDF5File.create(file)
            let loss = try h5.root.createExtendibleDataset("loss", of: Double.self)
            assertThrows(try loss.append([Float(1)]), containing: [file, "/loss", "float32", "float64", "[Double]"])
            try loss.append([1.0])
            try h5.close()
        }
        let h5 = try HDF5File.open(file)
        let loss = try h5.root.dataset("loss")
        assertThrows(try loss.append([2.0]), containing: [file, "/loss", "read-only", "writable: true"])
        assertThrows(try h5.root.createGroup("x"), containing: [file, "read-only", "writable: true"])
        assertThrows(try h5.root.setAttribute("x", 1), containing: [file, "read-only", "writable: true"])
        XCTAssertEqual(try loss.read(as: Double.self), [1.0])
    }

    // MARK: Groups

    func testGroupsNestExistAndListTheirMembers() throws {
        let file = path("groups.h5")
        let h5 = try HDF5File.create(file)
        let a = try h5.root.createGroup("runs/a")
        try h5.root.createGroup("runs/b/eval")
        try a.createGroup("train")
        try a.createDataset("samples/grid", values: [UInt8](repeating: 0, count: 4), shape: [2, 2])
        XCTAssertEqual(a.path, "/runs/a")
        XCTAssertEqual(try h5.root.group("runs").group("b").path, "/runs/b")
        XCTAssertEqual(try h5.root.childNames, ["runs"])
        XCTAssertEqual(try h5.root.group("runs").childNames, ["a", "b"])
        XCTAssertEqual(try a.childNames, ["samples", "train"])
        XCTAssertTrue(try h5.root.exists("runs/a/train"))
        XCTAssertTrue(try h5.root.exists("/runs/b/eval"))
        XCTAssertTrue(try a.exists("samples/grid"))
        XCTAssertTrue(try a.exists("/runs/b"))           // absolute paths start at the root
        XCTAssertFalse(try h5.root.exists("runs/c"))
        XCTAssertFalse(try h5.root.exists("runs/c/d/e"))
        XCTAssertFalse(try a.exists("samples/grid/deeper"))  // below a dataset: nothing, not an error

        assertThrows(try h5.root.group("runs/c"), containing: [file, "/runs/c", "no group", "'a', 'b'"])
        assertThrows(try h5.root.group("runs/c/d"), containing: [file, "/runs/c/d", "'/runs/c' does not exist"])
        assertThrows(try h5.root.dataset("runs/a/train"),
                     containing: [file, "/runs/a/train", "is a group, not a dataset"])
        assertThrows(try a.group("samples/grid"), containing: ["/runs/a/samples/grid", "is a dataset, not a group"])
        assertThrows(try h5.root.createGroup("runs/a"), containing: ["/runs/a", "already exists"])
        try h5.close()

        // h5dump -H sees the same structure.
        let header = try H5Dump.header(of: file)
        for line in ["GROUP \"runs\"", "GROUP \"a\"", "GROUP \"b\"", "GROUP \"eval\"", "GROUP \"train\"",
                     "DATASET \"grid\""] {
            XCTAssertTrue(header.contains(line), "h5dump -H lacks \(line):\n\(header)")
        }
    }

    func testObjectsThrowAfterTheFileIsClosed() throws {
        let file = path("closed.h5")
        let h5 = try HDF5File.create(file)
        let group = try h5.root.createGroup("runs")
        let loss = try group.createExtendibleDataset("loss", of: Double.self)
        try h5.close()
        try h5.close()   // a second close does nothing
        XCTAssertFalse(h5.isOpen)
        assertThrows(try group.childNames, containing: [file, "/runs", "closed"])
        assertThrows(try loss.append([1.0]), containing: [file, "/runs/loss", "closed"])
        assertThrows(try h5.flush(), containing: [file, "closed"])
        // Everything was closed with the file, so it opens again cleanly.
        XCTAssertEqual(try HDF5File.open(file).root.childNames, ["runs"])
    }

    func testFileStaysOpenWhileAnObjectFromItIsAlive() throws {
        let file = path("lifetime.h5")
        var loss: HDF5Dataset? = try {
            let h5 = try HDF5File.create(file)
            return try h5.root.createExtendibleDataset("loss", of: Double.self)
        }()
        // The HDF5File is gone; the dataset keeps the file open and usable.
        try loss?.append([1.0, 2.0])
        loss = nil   // the last reference: the file closes here
        XCTAssertEqual(try HDF5File.open(file).root.dataset("loss").read(as: Double.self), [1.0, 2.0])
    }

    // MARK: Handles

    func testNoHandleLeaksAcrossWritesReadsAndErrors() throws {
        let file = path("leaks.h5")
        let text = path("text.h5")
        try "plain text".write(toFile: text, atomically: true, encoding: .utf8)
        _ = try HDF5File.create(path("warm-up.h5"))   // initialise HDF5 before counting
        let before = hdf5OpenObjectCounts()

        do {
            let h5 = try HDF5File.create(file)
            let run = try h5.root.createGroup("runs/a")
            try run.setAttribute("config", "x: 1")
            try run.setAttribute("recipe", "show-o", fixedLength: true)
            try run.setAttribute("seed", 1)
            try run.setAttribute("lr", 0.5)
            try run.setAttribute("counts", [1, 2])
            try run.setAttribute("betas", [0.9])
            try run.setAttribute("seed", 2)   // replaces
            try run.createDataset("w", tensor: Tensor(zeros: [3, 4]))
            try run.createDataset("grid", values: [UInt8](repeating: 1, count: 8), shape: [2, 2, 2])
            let loss = try run.createExtendibleDataset("train/loss", of: Double.self, chunkSize: 2)
            for step in 0..<5 { try loss.append([Double(step), Double(step) / 2, 0.25]) }
            _ = try? run.stringAttribute("seed")
            _ = try? run.intAttribute("missing")
            _ = try? run.group("nothing/here")
            _ = try? run.dataset("train")
            _ = try? loss.append([Float(1)])
            _ = try? run.createDataset("w", values: [Int32(1)], shape: [1])
            _ = try? run.createDataset("bad", values: [Int32(1)], shape: [2])
            _ = try run.exists("w/below/a/dataset")
            try h5.close()
        }
        do {
            let h5 = try HDF5File.open(file)
            let run = try h5.root.group("runs/a")
            for name in try run.attributeNames {
                _ = try? run.stringAttribute(name)
                _ = try? run.doubleArrayAttribute(name)
            }
            _ = try run.childNames
            _ = try run.dataset("w").readTensor()
            _ = try run.dataset("grid").read(as: UInt8.self)
            _ = try run.dataset("train/loss").read(as: Double.self)
            _ = try? run.dataset("train/loss").read(as: Float.self)
            _ = try? run.dataset("train/loss").append([1.0])   // read-only
            // Not closed explicitly: released here, with the groups and datasets opened from it.
        }
        _ = try? HDF5File.create(file)                 // refused: exists
        _ = try? HDF5File.open(text)                   // not HDF5
        _ = try? HDF5File.open(path("absent.h5"))
        do {
            // close() with objects still alive closes them too.
            let h5 = try HDF5File.open(file, writable: true)
            let loss = try h5.root.dataset("runs/a/train/loss")
            let group = try h5.root.group("runs")
            try h5.close()
            XCTAssertEqual(hdf5OpenObjectCounts(), before, "objects alive after close() still hold identifiers")
            _ = (loss, group)
        }
        XCTAssertEqual(hdf5OpenObjectCounts(), before, "identifiers leaked")
        // And the file opens for writing again: nothing holds it open read-only behind the scenes.
        let again = try HDF5File.open(file, writable: true)
        try again.root.dataset("runs/a/train/loss").append([9.0])
        try again.close()
    }

    // MARK: Files

    func testCreateRefusesToOverwriteUnlessAsked() throws {
        let file = path("existing.h5")
        do {
            let h5 = try HDF5File.create(file)
            try h5.root.setAttribute("generation", 1)
            try h5.close()
        }
        assertThrows(try HDF5File.create(file), containing: [file, "already exists", "overwrite: true"])
        assertThrows(try HDF5File.create(file, overwrite: false), containing: [file, "overwrite: true"])
        XCTAssertEqual(try HDF5File.open(file).root.intAttribute("generation"), 1,
                       "the refused create changed the file")

        do {
            let h5 = try HDF5File.create(file, overwrite: true)
            try h5.root.setAttribute("generation", 2)
            try h5.close()
        }
        XCTAssertEqual(try HDF5File.open(file).root.attributeNames, ["generation"])
        XCTAssertEqual(try HDF5File.open(file).root.intAttribute("generation"), 2)
    }

    func testCreateInAMissingDirectoryNamesTheFile() throws {
        let file = path("no/such/dir/x.h5")
        assertThrows(try HDF5File.create(file), containing: [file, "could not create", "directory"])
    }

    func testMissingNonHDF5AndTruncatedFilesThrowNamingTheFile() throws {
        let missing = path("missing.h5")
        assertThrows(try HDF5File.open(missing), containing: [missing, "no such file", "expected an HDF5 file"])

        let text = path("notes.h5")
        try "step,loss\n0,2.5\n".write(toFile: text, atomically: true, encoding: .utf8)
        assertThrows(try HDF5File.open(text), containing: [text, "not an HDF5 file", "expected an HDF5 file"])

        let empty = path("empty.h5")
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        assertThrows(try HDF5File.open(empty), containing: [empty, "not an HDF5 file"])

        assertThrows(try HDF5File.open(directory.path), containing: [directory.path, "directory"])

        // A valid file cut in half, as a copy of a file still being written would be.
        let truncated = path("truncated.h5")
        do {
            let h5 = try HDF5File.create(truncated)
            try h5.root.createDataset("weights", values: (0..<4096).map { Float($0) }, shape: [64, 64])
            try h5.root.setAttribute("kind", "test")
            try h5.close()
        }
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: truncated)[.size] as? Int)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: truncated))
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()
        assertThrows(try HDF5File.open(truncated),
                     containing: [truncated, "truncated or damaged", "expected a complete HDF5 file"])
        assertThrows(try HDF5File.open(truncated, writable: true), containing: [truncated])
    }
}
