// Fuzzing the files Fusion reads back (issue 17): a real tiny run's log.h5, a sweep's merged
// results.h5 and the run's checkpoint.h5 are damaged in seeded random ways, structurally through the
// HDF5 API (objects and attributes deleted, retyped, reshaped, shortened, filled with NaN or huge values)
// and byte by byte (truncated, bytes flipped), and every mutant goes through the real `fusion` binary:
// report and analyze (results), eval and sample (checkpoint), and train --resume (both). No process may
// die by a signal (a Swift trap is SIGILL or SIGTRAP); each must succeed or fail with a one-paragraph
// error. The seed is fixed, so a failure reproduces; its mutation is printed.
import XCTest
import Foundation
import Fusion
@testable import Experiments

final class ResultsFuzzTests: XCTestCase {
    static let seed: UInt64 = 17
    /// The tiny run (D 32, 2 layers, 4 steps, evaluated and checkpointed at step 4): `fusion train
    /// --resume` is given the same config and overrides.
    static func overrides(cache: String) -> [String] {
        ["recipe=chameleon", "recipe.model.width=32", "recipe.model.layers=2", "recipe.model.heads=2",
         "recipe.model.context_length=96", "data.train_images=300", "data.cache_directory=\(cache)",
         "train.steps=4", "train.batch_size=2", "train.warmup_steps=1", "train.log_every=2", "train.checkpoint_every=4",
         "train.eval_every=4", "eval.images=8", "eval.captions=4", "eval.text_tokens=256", "eval.maskgit_steps=2",
         "eval.denoising_steps=2", "eval.caption_tokens=8"]
    }

    func testDamagedFilesGiveErrorsNeverTraps() throws {
        let started = Date()
        let root = NSTemporaryDirectory() + "fusion-fuzz-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }

        // The real files: a run inside a sweep's directory, and the sweep's merged results with a second,
        // larger-budget copy of the run (so that analyze has a fit to make).
        let overrides = Self.overrides(cache: root + "/cache")
        let config = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: overrides)
        let run = root + "/sweep/runs/\(config.name)"
        try ExperimentRun.run(config, yaml: try ConfigLoader.yaml(config), directory: run, overwrite: false, resume: false)
        try Sweep.merge([config.name], directory: root + "/sweep")
        let results = root + "/sweep/results.h5"
        do {
            let file = try HDF5File.open(results, writable: true)
            let runs = try file.root.group("runs")
            try runs.copy(try runs.group(config.name), to: "\(config.name)-4x")
            let flops = try runs.dataset("\(config.name)-4x/eval/flops_counted")
            let values = try flops.read(as: Double.self).map { $0 * 4 }
            try flops.truncate(to: 0)
            try flops.append(values)
            try file.close()
        }
        // The unmutated files pass every command.
        for command in ["report", "analyze"] {
            let baseline = try FusionRun.start([command, results, "--out", root + "/baseline-\(command)"], in: root + "/baseline")
            XCTAssertEqual(baseline.status, 0, baseline.output)
        }

        var rng = SplitMix64(seed: Self.seed)
        var jobs: [FuzzJob] = []
        // Results mutants: every one through report and analyze; every fourth (a run's log) through --resume.
        let resultsMutants = 104
        for index in 0..<resultsMutants {
            let directory = root + "/r\(index)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let isLog = index % 2 == 0
            let target: String
            if index % 4 == 0 {
                try FileManager.default.copyItem(atPath: run, toPath: directory + "/run")
                target = directory + "/run/log.h5"
            } else {
                target = directory + (isLog ? "/log.h5" : "/results.h5")
                try FileManager.default.copyItem(atPath: isLog ? run + "/log.h5" : results, toPath: target)
            }
            var mutantRNG = SplitMix64(seed: rng.next())
            let mutation = "results mutant \(index) (\(isLog ? "log.h5" : "results.h5")): "
                + ResultsMutator.mutate(target, rng: &mutantRNG)
            jobs.append(FuzzJob(mutation: mutation, command: "report", arguments: ["report", target, "--out", directory + "/report"],
                                expectedFile: directory + "/report/report.md"))
            jobs.append(FuzzJob(mutation: mutation, command: "analyze", arguments: ["analyze", target, "--out", directory + "/analysis"],
                                expectedFile: directory + "/analysis/analysis.md"))
            if index % 4 == 0 {
                jobs.append(FuzzJob(mutation: mutation, command: "resume",
                                    arguments: ["train", "configs/tiny.yaml"] + overrides + ["--out", directory + "/run", "--resume"], expectedFile: nil))
            }
        }
        // Checkpoint mutants: each through one of eval, sample and --resume in turn.
        let checkpointMutants = 105
        var nextConfigEdit = 0
        for index in 0..<checkpointMutants {
            let directory = root + "/c\(index)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: run, toPath: directory + "/run")
            var mutantRNG = SplitMix64(seed: rng.next())
            let mutation = "checkpoint mutant \(index): "
                + CheckpointMutator.mutate(directory + "/run/checkpoint.h5", rng: &mutantRNG, configEdit: &nextConfigEdit)
            // A damaged config matters most to eval and sample, which build the model from it: those see both.
            let isConfigEdit = mutation.contains(": metadata config ")
            if index % 3 == 0 || isConfigEdit {
                jobs.append(FuzzJob(mutation: mutation, command: "eval", arguments: ["eval", directory + "/run"], expectedFile: nil))
            }
            if index % 3 == 1 || isConfigEdit {
                jobs.append(FuzzJob(mutation: mutation, command: "sample",
                                    arguments: ["sample", directory + "/run", "--prompt", "a dark sneaker", "--count", "2", "--out", directory + "/s.png"],
                                    expectedFile: directory + "/s.png"))
            }
            if index % 3 == 2 {
                jobs.append(FuzzJob(mutation: mutation, command: "resume",
                                    arguments: ["train", "configs/tiny.yaml"] + overrides + ["--out", directory + "/run", "--resume"], expectedFile: nil))
            }
        }

        // Two processes at a time (the cores), one thread each.
        let lock = NSLock()
        var failures: [String] = [], succeeded = 0, refused = 0
        var perCommand: [String: Int] = [:]
        var durations: [(seconds: Double, job: String)] = []
        let verbose = ProcessInfo.processInfo.environment["FUSION_FUZZ_VERBOSE"] != nil
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let job = jobs[i]
            let verdict: String?
            let status: Int32
            let jobStarted = Date()
            var ending = ""
            do {
                let result = try FusionRun.start(job.arguments, in: root + "/logs-\(i)")
                status = result.status
                verdict = result.problem(expectedFile: job.expectedFile)
                ending = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
            } catch {
                status = -1
                verdict = "could not run fusion: \(error)"
            }
            let seconds = Date().timeIntervalSince(jobStarted)
            lock.lock()
            if verbose { print("\(job.mutation) | \(job.command) | status \(status) | \(String(format: "%.1f s", seconds)) | \(ending.prefix(300))") }
            durations.append((seconds, "\(job.command) of \(job.mutation)"))
            perCommand[job.command, default: 0] += 1
            if let verdict { failures.append("\(job.mutation)\n  fusion \(job.command): \(verdict)") }
            else if status == 0 { succeeded += 1 } else { refused += 1 }
            lock.unlock()
        }
        let seconds = Date().timeIntervalSince(started)
        print("ResultsFuzzTests: \(resultsMutants) results mutants, \(checkpointMutants) checkpoint mutants (seed \(Self.seed)); runs per command: "
              + perCommand.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
              + "; \(succeeded) succeeded, \(refused) refused with an error, \(failures.count) failed (trap, hang or unclear error); "
              + String(format: "%.0f s", seconds) + "; slowest: "
              + durations.sorted { $0.seconds > $1.seconds }.prefix(3).map { String(format: "%.1f s ", $0.seconds) + $0.job }.joined(separator: "; "))
        for command in ["report", "analyze", "eval", "sample", "resume"] {
            XCTAssertGreaterThanOrEqual(perCommand[command] ?? 0, 25, "fusion \(command) saw too few mutants")
        }
        XCTAssert(failures.isEmpty, "\(failures.count) of \(jobs.count) runs failed:\n" + failures.joined(separator: "\n"))
    }
}

// MARK: - Running fusion

struct FuzzJob {
    let mutation: String
    let command: String
    let arguments: [String]
    /// A file a successful run must have written.
    let expectedFile: String?
}

/// One run of the `fusion` binary, with how it ended told apart: a normal exit or a signal.
struct FusionRun {
    let status: Int32
    let killedBySignal: Bool
    let timedOut: Bool
    let stdout: String
    let stderr: String
    var output: String { stdout + stderr }

    /// Runs fusion with FUSION_THREADS=1, stdout and stderr to files in `directory`; gives up after `limit` seconds.
    static func start(_ arguments: [String], in directory: String, limit: TimeInterval = 120) throws -> FusionRun {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let out = directory + "/stdout", err = directory + "/stderr"  // emptied: the child appends
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        var environment = ProcessInfo.processInfo.environment
        environment["FUSION_THREADS"] = "1"
        let process = try ChildProcess.start(try FusionBinary.executable().path, arguments, environment: environment,
                                             standardOutput: .file(out), standardError: .file(err))
        var timedOut = false
        var ending = process.wait(seconds: limit)
        if ending == nil {
            timedOut = true
            process.send(SIGTERM)
            // fusion finishes its step on SIGTERM before it exits; a hung one is then killed outright.
            ending = process.wait(seconds: 10)
            if ending == nil {
                process.send(SIGKILL)
                ending = process.wait()
            }
        }
        return FusionRun(status: ending!.signal ?? ending!.status, killedBySignal: ending!.signal != nil,
                         timedOut: timedOut, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    /// Why this run is not a success or a clear error, or nil when it is one of those.
    func problem(expectedFile: String?) -> String? {
        let tail = String(output.suffix(1500))
        if timedOut { return "still running after its time limit (a hang?): …\(tail)" }
        if killedBySignal { return "killed by signal \(status) (\(status == 4 ? "SIGILL: a Swift trap" : status == 5 ? "SIGTRAP: a Swift trap" : "a crash")): …\(tail)" }
        for sign in ["Fatal error", "Stack dump", "Current stack trace", "💣", "Program crashed", "Segmentation fault"] where output.contains(sign) {
            return "printed '\(sign)': …\(tail)"
        }
        if status == 0 {
            if let expectedFile, !FileManager.default.fileExists(atPath: expectedFile) { return "exited 0 without writing \(expectedFile)" }
            return nil
        }
        // The error: from fusion's "fusion: " line (main.swift) to the end of stderr, one paragraph.
        guard let start = stderr.range(of: "fusion: ", options: .backwards) else {
            return "exited \(status) without a 'fusion: ' error message: …\(tail)"
        }
        let message = stderr[start.lowerBound...].trimmingCharacters(in: .whitespacesAndNewlines)
        guard message.count > "fusion: ".count + 10, !message.contains("\n\n") else {
            return "exited \(status) with an unclear error: \(message)"
        }
        return nil
    }
}

// MARK: - Mutations

/// SplitMix64 (Steele et al. 2014): a small seeded generator, so every mutation reproduces.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Mutations every HDF5 file can take: of its bytes, of its objects and of its attributes.
enum FileMutator {
    /// Every object's absolute path below `group` (groups and datasets), depth first.
    static func objects(in group: HDF5Group) throws -> [(path: String, isGroup: Bool)] {
        var found: [(String, Bool)] = []
        for name in try group.childNames {
            if let child = try? group.group(name) {
                found.append((child.path, true))
                found += try objects(in: child)
            } else {
                found.append(((group.path == "/" ? "" : group.path) + "/" + name, false))
            }
        }
        return found
    }

    static func truncate(_ path: String, rng: inout SplitMix64) -> String {
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
        let keep = Int.random(in: 0..<max(size, 1), using: &rng)
        let handle = FileHandle(forWritingAtPath: path)!
        handle.truncateFile(atOffset: UInt64(keep))
        handle.closeFile()
        return "truncated to \(keep) of \(size) bytes"
    }

    static func flipBytes(_ path: String, rng: inout SplitMix64) -> String {
        var bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        let count = Int.random(in: 1...16, using: &rng)
        // Half the time in the first 4 KiB, where HDF5 keeps its superblock and object headers.
        let window = Bool.random(using: &rng) ? min(4096, bytes.count) : bytes.count
        var flipped: [String] = []
        for _ in 0..<count {
            let offset = Int.random(in: 0..<window, using: &rng), mask = UInt8.random(in: 1...255, using: &rng)
            bytes[offset] ^= mask
            flipped.append("\(offset)^\(mask)")
        }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return "bytes flipped at \(flipped.joined(separator: ", "))"
    }

    /// A copy of the file without attribute `name` of `object` (HDF5's API here has no attribute removal).
    static func removeAttribute(_ name: String, of object: String, in path: String) throws {
        let source = try HDF5File.open(path)
        let copy = try HDF5File.create(path + ".copy", overwrite: true)
        func copyGroup(_ from: HDF5Group, _ to: HDF5Group) throws {
            for attribute in try from.attributeNames where !(from.path == object && attribute == name) {
                try copyAttribute(attribute, from: from, to: to)
            }
            for child in try from.childNames {
                if let group = try? from.group(child) { try copyGroup(group, try to.createGroup(child)) }
                else { try to.copy(try from.dataset(child), to: child) }
            }
        }
        try copyGroup(source.root, copy.root)
        try copy.close()
        try source.close()
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.moveItem(atPath: path + ".copy", toPath: path)
    }

    static func copyAttribute(_ name: String, from: HDF5Object, to: HDF5Object) throws {
        if let value = try? from.stringAttribute(name) { try to.setAttribute(name, value) }
        else if let value = try? from.int64Attribute(name) { try to.setAttribute(name, value) }
        else if let value = try? from.doubleAttribute(name) { try to.setAttribute(name, value) }
        else if let value = try? from.int64ArrayAttribute(name) { try to.setAttribute(name, value) }
        else if let value = try? from.doubleArrayAttribute(name) { try to.setAttribute(name, value) }
    }

    /// Sets attribute `name` of `object` to a value of a random other type or an odd value of its own.
    static func retypeAttribute(_ name: String, of object: HDF5Object, rng: inout SplitMix64) throws -> String {
        let choices: [(String, (HDF5Object) throws -> Void)] = [
            ("the string \"garbage\"", { try $0.setAttribute(name, "garbage") }),
            ("the empty string", { try $0.setAttribute(name, "") }),
            ("the integer 2", { try $0.setAttribute(name, Int64(2)) }),
            ("the integer -1", { try $0.setAttribute(name, Int64(-1)) }),
            ("the integer Int64.max", { try $0.setAttribute(name, Int64.max) }),
            ("the real NaN", { try $0.setAttribute(name, Double.nan) }),
            ("the real 1.5", { try $0.setAttribute(name, 1.5) }),
            ("an integer array [1, 2]", { try $0.setAttribute(name, [Int64(1), 2]) }),
            ("an empty real array", { try $0.setAttribute(name, [Double]()) }),
            ("random bytes as a string", { try $0.setAttribute(name, String(decoding: (0..<40).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 13) }, as: UTF8.self)) }),
        ]
        let (what, set) = choices.randomElement(using: &rng)!
        try set(object)
        return "attribute '\(name)' of \(object.path) set to \(what)"
    }

    /// Replaces dataset `path` with one of another type, shape or length, or with odd values of its own type.
    static func replaceDataset(_ path: String, in root: HDF5Group, rng: inout SplitMix64) throws -> String {
        let dataset = try root.dataset(path)
        let shape = try dataset.shape, count = try dataset.count
        let type = dataset.elementType
        let parent = try root.group((path as NSString).deletingLastPathComponent)
        let name = (path as NSString).lastPathComponent
        try parent.remove(name)
        let n = max(count, 1)
        let choices: [(String, () throws -> Void)] = [
            ("7 uint8 bytes", { try parent.createDataset(name, values: [UInt8](repeating: 7, count: 7), shape: [7]) }),
            ("an empty float64 series", { try parent.createExtendibleDataset(name, of: Double.self) }),
            ("a float64 scalar", { try parent.createDataset(name, values: [1.0], shape: []) }),
            ("int32 values of its shape", { try parent.createDataset(name, values: [Int32](repeating: 3, count: count), shape: shape) }),
            ("float32 values of its shape", { try parent.createDataset(name, values: [Float](repeating: 0.5, count: count), shape: shape) }),
            ("int64 values of its shape", { try parent.createDataset(name, values: [Int64](repeating: 4, count: count), shape: shape) }),
            ("one value fewer", { try parent.createDataset(name, values: [Double](repeating: 1, count: n - 1), shape: [n - 1]) }),
            ("one value more", { try parent.createDataset(name, values: [Double](repeating: 1, count: n + 1), shape: [n + 1]) }),
            ("a 2-D float64 [\(n), 2]", { try parent.createDataset(name, values: [Double](repeating: 2, count: 2 * n), shape: [n, 2]) }),
            ("float64 NaN, ∞, −1, 1e308 …", { try parent.createDataset(name, values: (0..<n).map { [Double.nan, .infinity, -1, 1e308, 0][$0 % 5] }, shape: [n]) }),
            ("int64 steps 0, −5, Int64.max, repeated …", { try parent.createDataset(name, values: (0..<n).map { [Int64(0), -5, .max, .max, 3][$0 % 5] }, shape: [n]) }),
            ("uint8 [2, 2, 4, 4] (two channels)", { try parent.createDataset(name, values: [UInt8](repeating: 9, count: 64), shape: [2, 2, 4, 4]) }),
            ("uint8 [0, 1, 4, 4] (no images)", { try parent.createDataset(name, values: [UInt8](), shape: [0, 1, 4, 4]) }),
            ("uint8 [1, 3, 5, 5] (one RGB image)", { try parent.createDataset(name, values: [UInt8](repeating: 200, count: 75), shape: [1, 3, 5, 5]) }),
            ("uint8 [3, 1, 2, 9] (not square)", { try parent.createDataset(name, values: [UInt8](repeating: 1, count: 54), shape: [3, 1, 2, 9]) }),
        ]
        let (what, create) = choices.randomElement(using: &rng)!
        try create()
        return "dataset \(path) (\(type.map { "\($0)" } ?? "?") \(shape)) replaced by \(what)"
    }
}

/// Damages a results file (log.h5 or results.h5) in one random way; returns what it did.
enum ResultsMutator {
    static func mutate(_ path: String, rng: inout SplitMix64) -> String {
        do { return try attempt(path, rng: &rng) } catch { return "mutation failed part-way (\(error)); the file is as it was left" }
    }

    private static func attempt(_ path: String, rng: inout SplitMix64) throws -> String {
        let kind = Int.random(in: 0..<11, using: &rng)
        switch kind {
        case 0: return FileMutator.truncate(path, rng: &rng)
        case 1: return FileMutator.flipBytes(path, rng: &rng)
        default: break
        }
        let file = try HDF5File.open(path, writable: true)
        defer { try? file.close() }
        let root = file.root
        let objects = try FileMutator.objects(in: root)
        let runs = objects.filter { $0.isGroup && $0.path.split(separator: "/").count == 2 }.map(\.path)
        let datasets = objects.filter { !$0.isGroup }.map(\.path)
        let run = runs.randomElement(using: &rng) ?? "/runs"
        switch kind {
        case 2:  // an attribute removed
            let object = Bool.random(using: &rng) ? "/" : run
            let names = try root.group(object).attributeNames
            guard let name = names.randomElement(using: &rng) else { return "nothing to remove" }
            try file.close()
            try FileMutator.removeAttribute(name, of: object, in: path)
            return "attribute '\(name)' of \(object) removed"
        case 3:  // an attribute retyped or given an odd value
            let object = try root.group(Bool.random(using: &rng) ? "/" : run)
            let names = try object.attributeNames + ["schema_version", "seed", "parameter_count"]
            return try FileMutator.retypeAttribute(names.randomElement(using: &rng)!, of: object, rng: &rng)
        case 4:  // a newer, an older or a missing schema version
            let version = [Int64(2), 0, -3, 1_000_000].randomElement(using: &rng)!
            try root.setAttribute("schema_version", version)
            return "schema_version set to \(version)"
        case 5:  // an object removed
            let (target, _) = objects.randomElement(using: &rng)!
            try root.remove(target)
            return "\(target) removed"
        case 6, 7:  // a dataset replaced
            let target = datasets.randomElement(using: &rng)!
            return try FileMutator.replaceDataset(target, in: root, rng: &rng)
        case 8:  // the issue's case: a samples dataset of 7 bytes
            guard let samples = datasets.first(where: { $0.hasPrefix(run) && $0.contains("/samples/step") && !$0.hasSuffix("_labels") }) else {
                return "no samples to damage"
            }
            try root.remove(samples)
            try root.createDataset(samples, values: [UInt8](repeating: 7, count: 7), shape: [7])
            return "\(samples) replaced by 7 uint8 bytes"
        case 9:  // one series shortened
            let series = datasets.filter { $0.contains("/train/") || $0.contains("/eval/") }
            let target = series.randomElement(using: &rng)!
            let dataset = try root.dataset(target)
            let keep = Int.random(in: 0..<max(try dataset.count, 1), using: &rng)
            try dataset.truncate(to: keep)
            return "\(target) shortened to \(keep) values"
        default:  // a group replaced by a dataset, or an odd member added
            let groups = objects.filter(\.isGroup).map(\.path) + ["/runs"]
            let target = groups.randomElement(using: &rng)!
            if Bool.random(using: &rng) {
                try root.remove(target)
                try root.createDataset(target, values: [1.0, 2.0], shape: [2])
                return "group \(target) replaced by a float64 dataset"
            }
            let name = ["step", "stepx", "step0_labels", "eval", "odd", "step99999999999999999999"].randomElement(using: &rng)!
            let member = target + "/" + name
            if try root.exists(member) { try root.remove(member) }
            try root.createGroup(member)
            return "an empty group \(member) added"
        }
    }
}

/// Damages a run's checkpoint.h5 (its metadata config, its tokenizer, its tensors, or its bytes).
enum CheckpointMutator {
    /// `configEdit`: the next of `configEdits` to apply, so that every one is tried in turn.
    static func mutate(_ path: String, rng: inout SplitMix64, configEdit: inout Int) -> String {
        do { return try attempt(path, rng: &rng, configEdit: &configEdit) } catch { return "mutation failed part-way (\(error)); the file is as it was left" }
    }

    /// Changes to the resolved config's YAML: garbage, wrong types, out-of-range values, other model shapes.
    static let configEdits: [(String, (String) -> String)] = [
        ("emptied", { _ in "" }),
        ("garbage YAML", { _ in "{{{ : ] not yaml [" }),
        ("cut in half", { String($0.prefix($0.count / 2)) }),
        ("a list", { _ in "- 1\n- 2\n" }),
        ("width 64 (another model)", { $0.replacingOccurrences(of: "width: 32", with: "width: 64") }),
        ("width 1e9", { $0.replacingOccurrences(of: "width: 32", with: "width: 1000000000") }),
        ("width 2^62", { $0.replacingOccurrences(of: "width: 32", with: "width: 4611686018427387904") }),
        ("layers 3", { $0.replacingOccurrences(of: "layers: 2", with: "layers: 3") }),
        ("layers 1e12", { $0.replacingOccurrences(of: "layers: 2", with: "layers: 1000000000000") }),
        ("context_length 2^40", { $0.replacingOccurrences(of: "context_length: 96", with: "context_length: 1099511627776") }),
        ("heads 0", { $0.replacingOccurrences(of: "heads: 2", with: "heads: 0") }),
        ("width −32", { $0.replacingOccurrences(of: "width: 32", with: "width: -32") }),
        ("heads 3", { $0.replacingOccurrences(of: "heads: 2", with: "heads: 3") }),
        ("mlp_hidden 2^40", { $0.replacingOccurrences(of: "mlp_hidden: 0", with: "mlp_hidden: 1099511627776") }),
        ("width a string", { $0.replacingOccurrences(of: "width: 32", with: "width: wide") }),
        ("recipe showo", { $0.replacingOccurrences(of: "recipe: chameleon", with: "recipe: showo") }),
        ("recipe transfusion", { $0.replacingOccurrences(of: "recipe: chameleon", with: "recipe: transfusion") }),
        ("recipe unknown", { $0.replacingOccurrences(of: "recipe: chameleon", with: "recipe: dalle") }),
        ("eval.images -1", { $0.replacingOccurrences(of: "images: 8", with: "images: -1") }),
        ("an unknown key", { $0 + "\nsurprise: 1\n" }),
        ("steps removed", { $0.split(separator: "\n").filter { !$0.contains("steps:") }.joined(separator: "\n") }),
        ("NUL and control bytes", { _ in "name: \u{1}\u{7}\u{1B}[31m" }),
    ]

    private static func attempt(_ path: String, rng: inout SplitMix64, configEdit: inout Int) throws -> String {
        let kind = Int.random(in: 0..<10, using: &rng)
        switch kind {
        case 0: return FileMutator.truncate(path, rng: &rng)
        case 1: return FileMutator.flipBytes(path, rng: &rng)
        default: break
        }
        let file = try HDF5File.open(path, writable: true)
        defer { try? file.close() }
        let root = file.root
        switch kind {
        case 2, 3:  // the config
            let metadata = try root.group("metadata")
            let (what, edit) = configEdits[configEdit % configEdits.count]
            configEdit += 1
            try metadata.setAttribute("config", edit(try metadata.stringAttribute("config")))
            return "metadata config \(what)"
        case 4:  // a metadata or root attribute retyped, or removed
            let object = Bool.random(using: &rng) ? root : try root.group("metadata")
            let names = try object.attributeNames
            let name = names.randomElement(using: &rng)!
            if Int.random(in: 0..<3, using: &rng) == 0 {
                try file.close()
                try FileMutator.removeAttribute(name, of: object.path, in: path)
                return "attribute '\(name)' of \(object.path) removed"
            }
            return try FileMutator.retypeAttribute(name, of: object, rng: &rng)
        case 5, 6:  // the tokenizer's merges
            let tokenizer = try root.group("tokenizer")
            let merges = try tokenizer.dataset("merges")
            var values = try merges.read(as: Int32.self)
            let m = values.count / 2
            let rank = Int.random(in: 0..<max(m, 1), using: &rng)
            let edits: [(String, () throws -> Void)] = [
                ("merge \(rank) joins id 2^31−1", { values[2 * rank] = .max }),
                ("merge \(rank) joins id −1", { values[2 * rank + 1] = -1 }),
                ("merge \(rank) joins itself (id \(256 + rank))", { values[2 * rank] = Int32(256 + rank) }),
                ("merge \(rank) repeats merge 0", { if rank > 0 { values[2 * rank] = values[0]; values[2 * rank + 1] = values[1] } }),
                ("merges zeroed", { values = values.map { _ in 0 } }),
            ]
            let (what, edit) = edits.randomElement(using: &rng)!
            try edit()
            try tokenizer.remove("merges")
            try tokenizer.createDataset("merges", values: values, shape: [m, 2])
            return "tokenizer: \(what)"
        case 7:  // a tokenizer attribute or member
            let tokenizer = try root.group("tokenizer")
            switch Int.random(in: 0..<5, using: &rng) {
            case 0:
                let count = try tokenizer.int64Attribute("merge_count") + [1, -1, 1 << 40, -(1 << 40)].randomElement(using: &rng)!
                try tokenizer.setAttribute("merge_count", count)
                return "tokenizer merge_count set to \(count)"
            case 1:
                let size = [Int64(0), -1, 300, Int64.max].randomElement(using: &rng)!
                try tokenizer.setAttribute("vocabulary_size", size)
                return "tokenizer vocabulary_size set to \(size)"
            case 2:
                try root.remove("tokenizer")
                return "tokenizer removed"
            case 3:
                // A consistent, smaller tokenizer: valid, but not the one the model was trained with.
                let values = try tokenizer.dataset("merges").read(as: Int32.self)
                let keep = values.count / 4
                try tokenizer.remove("merges")
                try tokenizer.createDataset("merges", values: Array(values.prefix(2 * keep)), shape: [keep, 2])
                try tokenizer.setAttribute("merge_count", Int64(keep))
                try tokenizer.setAttribute("vocabulary_size", Int64(256 + keep + SpecialToken.allCases.count))
                return "tokenizer cut to its first \(keep) merges (consistent)"
            default:
                let names = try tokenizer.attributeNames
                return "tokenizer " + (try FileMutator.retypeAttribute(names.randomElement(using: &rng)!, of: tokenizer, rng: &rng))
            }
        default:  // a tensor, optimiser state or rng_state removed or replaced
            let datasets = try FileMutator.objects(in: root).filter { !$0.isGroup && !$0.path.hasPrefix("/tokenizer") }.map(\.path)
            let target = datasets.randomElement(using: &rng)!
            if Int.random(in: 0..<4, using: &rng) == 0 {
                try root.remove(target)
                return "\(target) removed"
            }
            return try FileMutator.replaceDataset(target, in: root, rng: &rng)
        }
    }
}
