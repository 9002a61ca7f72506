import Foundation

// Checkpoint: a training run's state (parameters, optimiser moments, RNG state, step, resolved config)
// in one HDF5 file, and its strict loading back into a model, in the style of mlx-swift-lm: every
// parameter must be present with its shape, and any missing, extra or misshapen one is an error.
//
// File layout (format version 1), readable with h5py as `f["tensors/blocks.3.attn.wq"][...]`:
//
//   /                     attributes: kind = "fusion-checkpoint", format_version = 1, step
//   /tensors/NAME         float32, the parameter's shape       (e.g. NAME = "blocks.3.attn.wq")
//   /optimizer_state/NAME float32, the state tensor's shape    (e.g. NAME = "m.blocks.3.attn.wq")
//   /rng_state            uint64 [n]
//   /metadata             a group whose attributes are the metadata, each a UTF-8 string
//                         (e.g. "config" = the resolved configuration as YAML)
//
// A checkpoint is written to a temporary file beside its destination and renamed into place when
// complete, so a crash while writing never leaves a damaged file under the checkpoint's name.

/// A snapshot of a training run, written to and read from one HDF5 file.
public struct Checkpoint {
    /// The value of the root attribute "kind" that marks a file as a Fusion checkpoint.
    public static let kind = "fusion-checkpoint"
    /// The layout version this build writes; it reads this version and older ones.
    public static let formatVersion = 1

    /// The optimiser step the snapshot was taken after.
    public var step: Int
    /// The model's parameters by name, e.g. "blocks.3.attn.wq".
    public var tensors: [String: Tensor]
    /// The optimiser's state tensors by name, e.g. "m.blocks.3.attn.wq" (first moment).
    public var optimizerState: [String: Tensor]
    /// The random number generator's state, so that a resumed run draws the same numbers.
    public var rngState: [UInt64]
    /// Free-form text, e.g. "config" = the resolved configuration as YAML.
    public var metadata: [String: String]

    public init(step: Int, tensors: [String: Tensor], optimizerState: [String: Tensor] = [:],
                rngState: [UInt64] = [], metadata: [String: String] = [:]) {
        self.step = step
        self.tensors = tensors
        self.optimizerState = optimizerState
        self.rngState = rngState
        self.metadata = metadata
    }

    // MARK: Writing

    /// Writes the checkpoint to `path`. Refuses to replace an existing file unless `overwrite` is true.
    /// `extraContents` adds the caller's own groups to the root (a run's tokenizer and log) in the same
    /// file before it is renamed into place, so a kill at any moment leaves either the previous complete
    /// checkpoint or this one, never one without them. The file appears under `path` only once complete.
    public func write(to path: String, overwrite: Bool = false, extraContents: ((HDF5Group) throws -> Void)? = nil) throws {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: path) && !overwrite {
            throw CheckpointError.fileExists(path: path)
        }
        for name in tensors.keys { try Self.validate(name: name, in: "tensors") }
        for name in optimizerState.keys { try Self.validate(name: name, in: "optimizerState") }
        if metadata.keys.contains("") {
            throw CheckpointError.invalidName(name: "", in: "metadata", reason: "it is empty")
        }

        let partial = path + ".partial-\(ProcessInfo.processInfo.processIdentifier)"
        do {
            let file = try HDF5File.create(partial, overwrite: true)
            try file.root.setAttribute("kind", Self.kind)
            try file.root.setAttribute("format_version", Self.formatVersion)
            try file.root.setAttribute("step", step)
            let parameters = try file.root.createGroup("tensors")
            for (name, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
                try parameters.createDataset(name, tensor: tensor)
            }
            let optimizer = try file.root.createGroup("optimizer_state")
            for (name, tensor) in optimizerState.sorted(by: { $0.key < $1.key }) {
                try optimizer.createDataset(name, tensor: tensor)
            }
            try file.root.createDataset("rng_state", values: rngState, shape: [rngState.count])
            let notes = try file.root.createGroup("metadata")
            for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
                try notes.setAttribute(key, value)
            }
            try extraContents?(file.root)
            FaultInjection.reach("checkpoint.partial")
            try file.close()
        } catch {
            try? fileManager.removeItem(atPath: partial)
            throw error
        }
        // rename(2) replaces the destination atomically (same directory, so the same file system).
        if rename(partial, path) != 0 {
            let reason = String(cString: strerror(errno))
            try? fileManager.removeItem(atPath: partial)
            throw CheckpointError.cannotMove(from: partial, to: path, reason: reason)
        }
        FaultInjection.reach("checkpoint.renamed")
    }

    /// The temporary files `write(to:)` leaves beside `path` when its process is killed mid-write
    /// (`path.partial-PID`), for the caller to remove once it knows no other writer is running.
    public static func abandonedPartialFiles(of path: String) -> [String] {
        let directory = (path as NSString).deletingLastPathComponent, prefix = (path as NSString).lastPathComponent + ".partial-"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory)) ?? []
        return names.filter { $0.hasPrefix(prefix) }.sorted().map { directory.isEmpty ? $0 : "\(directory)/\($0)" }
    }

    /// Tensor names become HDF5 link names, so they must be non-empty and free of "/".
    private static func validate(name: String, in collection: String) throws {
        if name.isEmpty || name == "." {
            throw CheckpointError.invalidName(name: name, in: collection, reason: "it is empty or \".\"")
        }
        if name.contains("/") {
            throw CheckpointError.invalidName(name: name, in: collection,
                                              reason: "it contains \"/\" (use \".\" to separate levels)")
        }
    }

    // MARK: Reading

    /// Reads a checkpoint written by `write(to:)`. A file that is not HDF5, or an HDF5 file that is not
    /// a Fusion checkpoint, or one from a newer format version, gives an error saying so.
    public static func read(from path: String) throws -> Checkpoint {
        let file = try HDF5File.open(path, writable: false)
        defer { try? file.close() }
        let root = file.root

        guard try root.hasAttribute("kind") else {
            throw CheckpointError.notACheckpoint(path: path, reason: "its root group has no 'kind' attribute")
        }
        let kind: String
        do { kind = try root.stringAttribute("kind") } catch {
            throw CheckpointError.notACheckpoint(path: path, reason: "its 'kind' attribute is not a string")
        }
        guard kind == Self.kind else {
            throw CheckpointError.notACheckpoint(path: path, reason: "its 'kind' attribute is \"\(kind)\"")
        }
        let version = try root.intAttribute("format_version")
        guard version >= 1 && version <= formatVersion else {
            throw CheckpointError.unsupportedFormatVersion(path: path, found: version, supported: formatVersion)
        }

        func readTensors(_ group: HDF5Group) throws -> [String: Tensor] {
            var result: [String: Tensor] = [:]
            for name in try group.childNames {
                let tensor = try group.dataset(name).readTensor()
                tensor.name = name
                result[name] = tensor
            }
            return result
        }
        let notes = try root.group("metadata")
        var metadata: [String: String] = [:]
        for key in try notes.attributeNames { metadata[key] = try notes.stringAttribute(key) }

        return Checkpoint(step: try root.intAttribute("step"),
                          tensors: try readTensors(root.group("tensors")),
                          optimizerState: try readTensors(root.group("optimizer_state")),
                          rngState: try root.dataset("rng_state").read(as: UInt64.self),
                          metadata: metadata)
    }

    // MARK: Strict restore

    /// Copies the checkpoint's tensors into the model's parameters, in place (the same buffers).
    /// Every parameter must be in the checkpoint with the same shape, and the checkpoint must hold no
    /// other tensor; otherwise nothing is copied and the error lists every mismatch.
    public func restore(into parameters: [String: Tensor]) throws {
        try Self.copyStrictly(from: tensors, into: parameters, what: "parameter")
    }

    /// Copies the checkpoint's optimiser state into the optimiser's tensors, as strictly as `restore`.
    public func restoreOptimizerState(into state: [String: Tensor]) throws {
        try Self.copyStrictly(from: optimizerState, into: state, what: "optimiser state tensor")
    }

    private static func copyStrictly(from saved: [String: Tensor], into live: [String: Tensor], what: String) throws {
        var problems: [CheckpointMismatch] = []
        for (name, target) in live {
            if let source = saved[name] {
                if source.shape != target.shape {
                    problems.append(.shapeMismatch(name: name, expected: target.shape, found: source.shape))
                }
            } else {
                problems.append(.missing(name: name, expectedShape: target.shape))
            }
        }
        for (name, source) in saved where live[name] == nil {
            problems.append(.unexpected(name: name, foundShape: source.shape))
        }
        guard problems.isEmpty else {
            throw CheckpointError.mismatch(what: what, problems: problems.sorted { $0.name < $1.name })
        }
        for (name, target) in live {
            guard let source = saved[name], source.storage !== target.storage else { continue }
            target.data.update(from: source.data, count: target.count)
        }
    }
}

/// One way a checkpoint's tensors differ from the model's. "Expected" is the model's shape, "found"
/// the checkpoint's.
public enum CheckpointMismatch: Equatable, CustomStringConvertible, Sendable {
    /// The model has this tensor; the checkpoint does not.
    case missing(name: String, expectedShape: [Int])
    /// The checkpoint has this tensor; the model does not.
    case unexpected(name: String, foundShape: [Int])
    /// Both have it, with different shapes.
    case shapeMismatch(name: String, expected: [Int], found: [Int])

    public var name: String {
        switch self {
        case .missing(let name, _), .unexpected(let name, _), .shapeMismatch(let name, _, _): return name
        }
    }

    public var description: String {
        switch self {
        case .missing(let name, let expected):
            return "'\(name)': missing from the checkpoint (expected shape \(expected), found none)"
        case .unexpected(let name, let found):
            return "'\(name)': in the checkpoint (found shape \(found)) but not in the model (expected none)"
        case .shapeMismatch(let name, let expected, let found):
            return "'\(name)': expected shape \(expected), found \(found) in the checkpoint"
        }
    }
}

/// Why a checkpoint could not be written, read, or restored; each message says how to fix it.
public enum CheckpointError: Error, CustomStringConvertible, LocalizedError {
    case fileExists(path: String)
    case invalidName(name: String, in: String, reason: String)
    case cannotMove(from: String, to: String, reason: String)
    case notACheckpoint(path: String, reason: String)
    case unsupportedFormatVersion(path: String, found: Int, supported: Int)
    case mismatch(what: String, problems: [CheckpointMismatch])

    public var description: String {
        switch self {
        case .fileExists(let path):
            return "checkpoint '\(path)' already exists; pass overwrite: true to replace it"
        case .invalidName(let name, let collection, let reason):
            return "cannot write the checkpoint: the name \"\(name)\" in \(collection) is not allowed "
                + "because \(reason)"
        case .cannotMove(let from, let to, let reason):
            return "could not move the finished checkpoint '\(from)' to '\(to)': \(reason)"
        case .notACheckpoint(let path, let reason):
            return "'\(path)' is an HDF5 file but not a Fusion checkpoint: \(reason) "
                + "(a checkpoint has kind = \"\(Checkpoint.kind)\"); pass a file written by Checkpoint.write"
        case .unsupportedFormatVersion(let path, let found, let supported):
            return "checkpoint '\(path)' has format version \(found), but this build of Fusion reads versions "
                + "1 to \(supported); " + (found > supported ? "update Fusion to read it" : "the file is damaged")
        case .mismatch(let what, let problems):
            let shown = problems.prefix(20).map { "  - \($0)" }
            let more = problems.count > 20 ? ["  … and \(problems.count - 20) more"] : []
            return "the checkpoint does not match the model (\(problems.count) \(what) mismatch"
                + "\(problems.count == 1 ? "" : "es")):\n" + (shown + more).joined(separator: "\n")
                + "\nCheck that the model is built from the configuration the checkpoint was trained with "
                + "(its metadata keeps the resolved config)."
        }
    }

    public var errorDescription: String? { description }
}
