// `fusion sweep SWEEP.yaml`: a grid over config keys, each point a separate `fusion train` process
// (so a run stays a self-contained process, as a Slurm job array would run it), a configurable number
// at a time, merged at the end into one results file with one group per run. Re-running a sweep skips
// the runs that finished and resumes the ones that were killed.
//
//   name: scaling
//   base: configs/quickstart.yaml        # an experiment config
//   overrides: [train.steps=400]         # applied to every run (optional)
//   grid:                                # every combination of these values
//     recipe.recipe: [chameleon, showo, transfusion]
//     recipe.model.width: [64, 128]
//   parallel: 1                          # runs at a time
import Foundation
import Fusion
import Yams

struct SweepSpec {
    let name: String
    let base: String
    let overrides: [String]
    let grid: [(key: String, values: [String])]
    let parallel: Int

    static let keys = ["name", "base", "overrides", "grid", "parallel"]

    static func load(_ path: String) throws -> SweepSpec {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigurationError("\(path): cannot read the sweep file")
        }
        let node: Node
        do {
            guard let parsed = try Yams.compose(yaml: text) else { throw ConfigurationError("\(path): the sweep file is empty") }
            node = parsed
        } catch let error as ConfigurationError { throw error } catch {
            throw ConfigurationError("\(path): not valid YAML: \(error)")
        }
        guard let mapping = node.mapping else { throw ConfigurationError("\(path): a sweep is a mapping with keys \(keys.joined(separator: ", "))") }
        for key in mapping.keys.compactMap(\.string) where !keys.contains(key) {
            throw ConfigurationError("\(path): unknown key '\(key)'; the valid keys are \(keys.joined(separator: ", "))")
        }
        guard let name = mapping["name"]?.string, !name.isEmpty, !name.contains("/") else {
            throw ConfigurationError("\(path): 'name' is required (a name without '/')")
        }
        guard let base = mapping["base"]?.string else { throw ConfigurationError("\(path): 'base' (the experiment config every run starts from) is required") }
        let overrides = mapping["overrides"]?.sequence?.compactMap(\.string) ?? []
        guard let gridNode = mapping["grid"]?.mapping, !gridNode.isEmpty else {
            throw ConfigurationError("\(path): 'grid' must map config keys to lists of values, e.g. recipe.recipe: [chameleon, showo]")
        }
        var grid: [(String, [String])] = []
        for (keyNode, valuesNode) in gridNode {
            guard let key = keyNode.string, let values = valuesNode.sequence?.compactMap(\.string), !values.isEmpty else {
                throw ConfigurationError("\(path): grid.\(keyNode.string ?? "?") must be a non-empty list of values")
            }
            grid.append((key, values))
        }
        let parallel = mapping["parallel"].flatMap { $0.int } ?? 1
        guard parallel >= 1 else { throw ConfigurationError("\(path): parallel must be at least 1") }
        return SweepSpec(name: name, base: base, overrides: overrides, grid: grid, parallel: parallel)
    }

    /// Every combination, as (run name, overrides); a run is named by the sweep and its values in
    /// grid order ("scaling-showo-128").
    var points: [(name: String, overrides: [String])] {
        var points: [(String, [String])] = [(name, [])]
        for (key, values) in grid {
            points = points.flatMap { point in
                values.map { value in
                    let tag = value.replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: " ", with: "_")
                    return (point.0 + "-" + tag, point.1 + ["\(key)=\(value)"])
                }
            }
        }
        return points.map { ($0.0, overrides + $0.1) }
    }
}

enum Sweep {
    /// Runs every point of the sweep not finished yet, then merges all into `directory/results.h5`.
    static func run(_ spec: SweepSpec, directory: String, executable: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(directory)/runs", withIntermediateDirectories: true)
        let points = spec.points
        var pending: [(name: String, overrides: [String], directory: String, resume: Bool)] = []
        for point in points {
            let runDirectory = "\(directory)/runs/\(point.name)"
            if fm.fileExists(atPath: "\(runDirectory)/finished") {
                print("sweep: \(point.name) finished already, skipped")
                continue
            }
            pending.append((point.name, point.overrides, runDirectory, fm.fileExists(atPath: "\(runDirectory)/checkpoint.h5")))
        }
        print("sweep \(spec.name): \(points.count) runs, \(pending.count) to do, \(spec.parallel) at a time")
        var running: [(Process, String)] = []
        var failures: [String] = []
        func reap(waitForOne: Bool) {
            while true {
                if let index = running.firstIndex(where: { !$0.0.isRunning }) {
                    let (process, name) = running.remove(at: index)
                    if process.terminationStatus != 0 { failures.append(name) }
                    print("sweep: \(name) \(process.terminationStatus == 0 ? "finished" : "failed (status \(process.terminationStatus))")")
                    if !waitForOne { continue }
                    return
                }
                if !waitForOne || running.isEmpty { return }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        for run in pending {
            while running.count >= spec.parallel { reap(waitForOne: true) }
            try fm.createDirectory(atPath: run.directory, withIntermediateDirectories: true)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["train", spec.base] + run.overrides + ["name=\(run.name)", "--out", run.directory] + (run.resume ? ["--resume"] : ["--overwrite"])
            let output = FileHandle(forWritingAtPath: "\(run.directory)/output.txt") ?? {
                fm.createFile(atPath: "\(run.directory)/output.txt", contents: nil)
                return FileHandle(forWritingAtPath: "\(run.directory)/output.txt")!
            }()
            output.seekToEndOfFile()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            print("sweep: started \(run.name)\(run.resume ? " (resuming)" : "") → \(run.directory)/output.txt")
            running.append((process, run.name))
        }
        while !running.isEmpty { reap(waitForOne: true) }
        try merge(points.map(\.name), directory: directory)
        if !failures.isEmpty {
            throw RunFailure(description: "sweep \(spec.name): \(failures.count) run(s) failed: \(failures.joined(separator: ", ")); see their output.txt, then run the sweep again to retry them")
        }
    }

    /// One results file with a group per finished run, written beside and then renamed over the old one,
    /// so the file is never half-written and no two processes write it at once.
    static func merge(_ names: [String], directory: String) throws {
        let path = "\(directory)/results.h5", partial = "\(directory)/results.h5.partial"
        let merged = try HDF5File.create(partial, overwrite: true)
        try merged.root.setAttribute("schema_version", RunLog.schemaVersion)
        try merged.root.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
        try merged.root.setAttribute("git_commit", Provenance.gitCommit)
        try merged.root.setAttribute("machine", Provenance.machine)
        try merged.root.setAttribute("versions", Provenance.versions)
        var count = 0
        for name in names {
            let log = "\(directory)/runs/\(name)/log.h5"
            guard FileManager.default.fileExists(atPath: "\(directory)/runs/\(name)/finished"),
                  let file = try? HDF5File.open(log), let run = try? file.root.group("runs/\(name)") else { continue }
            try merged.root.copy(run, to: "runs/\(name)")
            count += 1
        }
        try merged.close()
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: partial, toPath: path)
        print("sweep: \(count) finished run(s) merged into \(path)")
    }
}
