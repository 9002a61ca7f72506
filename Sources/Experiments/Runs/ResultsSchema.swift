// The layout of Fusion's results files (a run's log.h5, a sweep's merged results.h5, an eval-stepN.h5),
// checked before anything in them is used, so that a damaged or foreign file gives an error naming the
// file, the object and what was expected, never a trap in the code that reads it. The layout is the
// one RunLog writes (DESIGN.md, "Results on disk"), schema version 1:
//
//   /                          attributes schema_version (int64, 1), created, git_commit, machine, versions (strings)
//   /runs/NAME                 a group per run; attributes config, recipe (strings), seed (integer),
//                              and, where present, integer counts (parameter_count, …) and strings
//   /runs/NAME/train/*         1-D series sharing the `step` axis: step int64, the others float64,
//   /runs/NAME/eval/*          all of one length, steps positive and strictly increasing
//   /runs/NAME/samples/stepN   uint8 [N, C, S, S], N ≥ 1, C = 1 or 3, S ≥ 1 (images in 0...255)
//   /runs/NAME/samples/stepN_labels  int32 [N], the class each image was prompted with (where the data have labels)
//
// Members of a run group other than train, eval and samples are not read by Fusion and not checked.
// No dataset may declare more elements than the file has bytes for (Fusion does not compress), which
// keeps a damaged shape from asking for a huge allocation when the values are read.
import Foundation
import Fusion

/// What is wrong with a results file: where, what was expected, what was found, and what to do.
struct ResultsSchemaError: Error, CustomStringConvertible, LocalizedError {
    let file: String
    /// The object's path inside the file ("/" for the file itself).
    let object: String
    let expected: String
    let found: String
    let advice: String

    var description: String { "\(file), \(object): expected \(expected), found \(found); \(advice)" }
    var errorDescription: String? { description }
}

enum ResultsSchema {
    /// The schema version this build reads (and RunLog writes).
    static let version: Int64 = RunLog.schemaVersion

    static let damaged = "the file is damaged: a sweep's results.h5 is made again by re-running fusion sweep (it merges the "
        + "runs' logs again); a run's log.h5 or eval-stepN.h5 by running that fusion train or fusion eval again"
    static let foreign = "this is not a Fusion results file; pass a run's log.h5, a sweep's results.h5 or an eval-stepN.h5"

    /// Opens the results file at `path` and checks all of it; returns it open for reading.
    static func open(_ path: String) throws -> HDF5File {
        let file = try HDF5File.open(path)
        try validate(file)
        return file
    }

    /// Checks the root attributes and every run of an open results file.
    static func validate(_ file: HDF5File) throws {
        try validateHeader(file)
        let path = file.path, root = file.root
        guard try root.exists("runs"), let runs = try? root.group("runs") else {
            throw ResultsSchemaError(file: path, object: "/runs", expected: "a group of runs", found: "none", advice: foreign)
        }
        for name in try runs.childNames {
            guard let run = try? runs.group(name) else {
                throw ResultsSchemaError(file: path, object: "/runs/\(name)", expected: "a run's group", found: "a dataset", advice: damaged)
            }
            try validateRun(run, file: path)
        }
    }

    /// Checks the root attributes: a schema version this build reads, and the provenance strings.
    /// With `validateRun`, what a run's log reopened by --resume needs.
    static func validateHeader(_ file: HDF5File) throws {
        let path = file.path, root = file.root
        guard try root.hasAttribute("schema_version") else {
            throw ResultsSchemaError(file: path, object: "/", expected: "a schema_version attribute",
                                     found: "none", advice: foreign)
        }
        let schema: Int64
        do { schema = try root.int64Attribute("schema_version") } catch {
            throw ResultsSchemaError(file: path, object: "/", expected: "schema_version to be an integer",
                                     found: "\(message(of: error))", advice: damaged)
        }
        guard schema <= version else {
            throw ResultsSchemaError(file: path, object: "/", expected: "schema_version ≤ \(version) (what this build of Fusion reads)",
                                     found: "\(schema)", advice: "the file was written by a newer Fusion; update Fusion to read it")
        }
        guard schema == version else {
            throw ResultsSchemaError(file: path, object: "/", expected: "schema_version \(version)", found: "\(schema)", advice: damaged)
        }
        for name in ["created", "git_commit", "machine", "versions"] {
            try requireString(name, of: root, file: path)
        }
    }

    /// Checks one run group (/runs/NAME): its attributes, its train and eval series and its samples.
    /// `file` is the file's path, for messages and for the size bound on datasets.
    static func validateRun(_ run: HDF5Group, file: String) throws {
        for name in ["config", "recipe"] { try requireString(name, of: run, file: file) }
        try requireInteger("seed", of: run, file: file)
        // Written by fusion train (not by fusion eval) and read by fusion report; other attributes are provenance.
        for name in ["parameter_count", "non_embedding_parameter_count", "tokens_per_step", "resumed_at_step"] {
            try requireInteger(name, of: run, file: file, required: false)
        }
        let bytes = fileSize(file)
        for section in RunLog.seriesSections where try run.exists(section) {
            // eval_guidance/ has a row per (step, guidance scale): its steps repeat.
            try validateSeries(try subgroup(section, of: run, file: file), file: file, fileBytes: bytes,
                               stepsRepeat: section == "eval_guidance")
        }
        if try run.exists("samples") {
            try validateSamples(try subgroup("samples", of: run, file: file), file: file, fileBytes: bytes)
        }
    }

    // MARK: Series and samples

    /// train/ or eval/: 1-D series on one `step` axis.
    private static func validateSeries(_ group: HDF5Group, file: String, fileBytes: Int, stepsRepeat: Bool = false) throws {
        let names = try group.childNames
        guard !names.isEmpty else { return }
        guard names.contains("step") else {
            throw ResultsSchemaError(file: file, object: group.path + "/step", expected: "the step axis of the series \(names)",
                                     found: "none", advice: damaged)
        }
        let step = try dataset("step", of: group, file: file, type: .int64, fileBytes: fileBytes)
        guard try step.shape.count == 1 else {
            throw ResultsSchemaError(file: file, object: step.path, expected: "a 1-D series", found: "shape \(try step.shape)", advice: damaged)
        }
        let length = try step.shape[0]
        let steps = try step.read(as: Int64.self)
        for i in steps.indices where steps[i] <= 0 || (i > 0 && (stepsRepeat ? steps[i] < steps[i - 1] : steps[i] <= steps[i - 1])) {
            throw ResultsSchemaError(file: file, object: step.path, expected: stepsRepeat ? "positive, non-decreasing steps" : "positive, strictly increasing steps",
                                     found: "\(steps[i]) at row \(i)" + (i > 0 ? " after \(steps[i - 1])" : ""), advice: damaged)
        }
        for name in names where name != "step" {
            let series = try dataset(name, of: group, file: file, type: .float64, fileBytes: fileBytes)
            let shape = try series.shape
            guard shape == [length] else {
                throw ResultsSchemaError(file: file, object: series.path,
                                         expected: "a 1-D series of \(length) value\(length == 1 ? "" : "s"), one per entry of \(step.path)",
                                         found: shape.count == 1 ? "\(shape[0]) value\(shape[0] == 1 ? "" : "s")" : "shape \(shape)", advice: damaged)
            }
        }
    }

    /// samples/: stepN (uint8 [N, C, S, S]), each with its stepN_labels (int32 [N]) where the data have labels.
    private static func validateSamples(_ group: HDF5Group, file: String, fileBytes: Int) throws {
        let names = Set(try group.childNames)
        for name in names.sorted() {
            let images = name.hasSuffix("_labels") ? String(name.dropLast("_labels".count)) : name
            guard images.hasPrefix("step"), let step = Int(images.dropFirst("step".count)), step > 0,
                  images == "step\(step)" else {
                throw ResultsSchemaError(file: file, object: group.path + "/" + name,
                                         expected: "samples named stepN or stepN_labels (N a positive step)", found: "'\(name)'", advice: damaged)
            }
            guard names.contains(images) else {
                throw ResultsSchemaError(file: file, object: group.path + "/" + images,
                                         expected: "it beside \(group.path)/\(name)", found: "none", advice: damaged)
            }
            guard name == images else { continue }   // each pair is checked once, from its images
            let pixels = try dataset(images, of: group, file: file, type: .uint8, fileBytes: fileBytes)
            let shape = try pixels.shape
            guard shape.count == 4, shape[0] >= 1, [1, 3].contains(shape[1]), shape[2] >= 1, shape[3] == shape[2] else {
                throw ResultsSchemaError(file: file, object: pixels.path,
                                         expected: "uint8 images [N, C, S, S] with N ≥ 1, C = 1 or 3, S ≥ 1",
                                         found: "shape \(shape)", advice: damaged)
            }
            guard names.contains(images + "_labels") else { continue }
            let labels = try dataset(images + "_labels", of: group, file: file, type: .int32, fileBytes: fileBytes)
            guard try labels.shape == [shape[0]] else {
                throw ResultsSchemaError(file: file, object: labels.path, expected: "int32 [\(shape[0])], a label per image of \(pixels.path)",
                                         found: "shape \(try labels.shape)", advice: damaged)
            }
        }
    }

    /// Checks that no dataset anywhere in `file` declares more bytes than the file has (Fusion writes
    /// no compressed datasets, so every value it wrote is in the file); returns the number of values in
    /// all datasets together. For files read whole by other code (a checkpoint), before they are read.
    static func requireDatasetsFitInFile(_ file: HDF5File) throws -> Int {
        let bytes = fileSize(file.path)
        var values = 0
        func visit(_ group: HDF5Group, depth: Int) throws {
            guard depth < 8 else {
                throw ResultsSchemaError(file: file.path, object: group.path, expected: "groups nested at most 8 deep",
                                         found: "deeper ones", advice: "the file is damaged")
            }
            for name in try group.childNames {
                if let child = try? group.group(name) { try visit(child, depth: depth + 1); continue }
                let dataset = try group.dataset(name)
                let count = try dataset.count
                let size = (dataset.elementType?.byteCount ?? 1).multipliedReportingOverflow(by: count)
                guard !size.overflow, size.partialValue <= bytes else {
                    throw ResultsSchemaError(file: file.path, object: dataset.path, expected: "a dataset that fits in the file's \(bytes) bytes",
                                             found: "shape \(try dataset.shape)", advice: "the file is damaged")
                }
                values += count
            }
        }
        try visit(file.root, depth: 0)
        return values
    }

    // MARK: Pieces

    private static func subgroup(_ name: String, of parent: HDF5Group, file: String) throws -> HDF5Group {
        guard let group = try? parent.group(name) else {
            throw ResultsSchemaError(file: file, object: parent.path + "/" + name, expected: "a group", found: "a dataset", advice: damaged)
        }
        return group
    }

    /// The dataset `name` of `group`, of element type `type`, no larger than the file can hold.
    private static func dataset(_ name: String, of group: HDF5Group, file: String, type: HDF5ElementType,
                                fileBytes: Int) throws -> HDF5Dataset {
        let object = group.path + "/" + name
        guard let dataset = try? group.dataset(name) else {
            throw ResultsSchemaError(file: file, object: object, expected: "a \(type) dataset", found: "a group", advice: damaged)
        }
        guard dataset.elementType == type else {
            throw ResultsSchemaError(file: file, object: object, expected: "\(type) values",
                                     found: dataset.elementType.map { "\($0) values" } ?? "values of a type Fusion does not write", advice: damaged)
        }
        let shape = try dataset.shape
        var bytes = type.byteCount
        for extent in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: extent)
            bytes = overflow ? .max : product
        }
        guard bytes <= fileBytes else {
            throw ResultsSchemaError(file: file, object: object, expected: "a dataset that fits in the file's \(fileBytes) bytes",
                                     found: "shape \(shape), which needs \(bytes == .max ? "more" : "\(bytes)") bytes", advice: damaged)
        }
        return dataset
    }

    private static func requireString(_ name: String, of object: HDF5Object, file: String, required: Bool = true) throws {
        guard try object.hasAttribute(name) else {
            guard required else { return }
            throw ResultsSchemaError(file: file, object: object.path, expected: "a string attribute '\(name)'", found: "none", advice: damaged)
        }
        do { _ = try object.stringAttribute(name) } catch {
            throw ResultsSchemaError(file: file, object: object.path, expected: "attribute '\(name)' to be a string",
                                     found: message(of: error), advice: damaged)
        }
    }

    private static func requireInteger(_ name: String, of object: HDF5Object, file: String, required: Bool = true) throws {
        guard try object.hasAttribute(name) else {
            guard required else { return }
            throw ResultsSchemaError(file: file, object: object.path, expected: "an integer attribute '\(name)'", found: "none", advice: damaged)
        }
        do { _ = try object.int64Attribute(name) } catch {
            throw ResultsSchemaError(file: file, object: object.path, expected: "attribute '\(name)' to be an integer",
                                     found: message(of: error), advice: damaged)
        }
    }

    /// An HDF5 error's own message, without the file and object the schema error names already.
    private static func message(of error: Error) -> String {
        (error as? HDF5Error).map { $0.message } ?? "\(error)"
    }

    private static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }
}

extension HDF5ElementType {
    /// Bytes per element.
    var byteCount: Int {
        switch self {
        case .uint8: return 1
        case .int32, .float32: return 4
        case .int64, .float64, .uint64: return 8
        }
    }
}
