// `fusion sweep FILE --slurm`: the sweep's pending runs as one Slurm job array, one array task a run,
// each task the same `fusion train … --resume` the local sweep starts (under mpirun with --ntasks K > 1,
// data-parallel over K ranks). A task is safe to requeue or to run again: it resumes its run, or finds it
// finished. `fusion sweep FILE --merge` then merges every finished run into results.h5, as the local
// sweep does, and says which runs are still queued, failed or not started.
//
// Files, under the sweep's directory:
//   slurm/array-N.sbatch   the N-th script submitted (kept: what ran is on record)
//   slurm/array-N.runs     its runs, one name a line, in array-task order
//   slurm/array-N.job      the job id sbatch returned
//   slurm/%A_%a.out        Slurm's own output of each task; a run's output goes to runs/NAME/output.txt
import Foundation
import Fusion

enum SlurmSweep {
    /// What sbatch is asked for, beside the array itself (nil: the cluster's default).
    struct Resources: Equatable {
        var partition: String? = nil
        var time: String? = nil
        var cpusPerTask: Int? = nil
        var ntasks = 1
        var account: String? = nil
    }

    /// A run of the sweep that the array will train.
    struct Task {
        let name: String
        let overrides: [String]
    }

    /// The job name of a sweep's arrays, by which `squeue` finds them.
    static func jobName(_ spec: SweepSpec) -> String { "fusion-\(spec.name)" }

    /// The sbatch script of `tasks`. Paths are absolute: the tasks run wherever Slurm puts them, in
    /// `workingDirectory` (where the sweep's relative config paths hold), which every node must see.
    static func script(_ spec: SweepSpec, tasks: [Task], directory: String, executable: String, workingDirectory: String,
                       resources: Resources) -> String {
        var lines = ["#!/bin/bash",
                     "# Written by fusion sweep --slurm: one array task a run of sweep \(spec.name). A task resumes its run",
                     "# from its checkpoint, so it may be requeued, cancelled and submitted again at any time.",
                     "#SBATCH --job-name=\(jobName(spec))",
                     "#SBATCH --array=0-\(tasks.count - 1)",
                     "#SBATCH --ntasks=\(resources.ntasks)",
                     "#SBATCH --chdir=\(shellQuoted(workingDirectory))",
                     "#SBATCH --output=\(shellQuoted(directory + "/slurm/%A_%a.out"))",
                     "#SBATCH --open-mode=append",
                     "#SBATCH --requeue"]
        if let cpus = resources.cpusPerTask { lines.append("#SBATCH --cpus-per-task=\(cpus)") }
        if let partition = resources.partition { lines.append("#SBATCH --partition=\(partition)") }
        if let account = resources.account { lines.append("#SBATCH --account=\(account)") }
        if let time = resources.time {
            lines.append("#SBATCH --time=\(time)")
            // SIGTERM two minutes before the limit: the run saves a checkpoint, and the next submission resumes it.
            lines.append("#SBATCH --signal=B:TERM@120")
        }
        lines += ["set -euo pipefail",
                  "# Each rank takes the task's CPUs (all of this node's cores ÷ its ranks without --cpus-per-task).",
                  "if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export FUSION_THREADS=$SLURM_CPUS_PER_TASK; fi",
                  "case \"$SLURM_ARRAY_TASK_ID\" in"]
        for (index, task) in tasks.enumerated() {
            let arguments = ["train", spec.base] + task.overrides + ["name=\(task.name)", "--out", "\(directory)/runs/\(task.name)", "--resume"]
            lines.append("  \(index)) run=\(shellQuoted(task.name)); arguments=(\(arguments.map(shellQuoted).joined(separator: " "))) ;;")
        }
        lines += ["  *) echo \"fusion sweep: no run for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 1 ;;",
                  "esac",
                  "output=\(shellQuoted(directory + "/runs"))/$run/output.txt",
                  "mkdir -p \"$(dirname \"$output\")\"",
                  "echo \"fusion sweep: $run on $(hostname -s), job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\" >> \"$output\""]
        if resources.ntasks > 1 {
            lines += ["# Data-parallel over the task's ranks (Open MPI's mpirun reads the allocation).",
                      "if [ \"$(id -u)\" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi",
                      "exec mpirun -np \"$SLURM_NTASKS\" \(shellQuoted(executable)) \"${arguments[@]}\" >> \"$output\" 2>&1"]
        } else {
            lines.append("exec \(shellQuoted(executable)) \"${arguments[@]}\" >> \"$output\" 2>&1")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes the script of the sweep's pending runs (neither finished nor queued) and submits it, or
    /// with `dryRun` prints it. With nothing pending, merges instead.
    static func submit(_ spec: SweepSpec, directory: String, executable: String, resources: Resources, dryRun: Bool) throws {
        let fm = FileManager.default
        _ = try Sweep.plan(spec)
        let directory = absolute(directory)
        let queued = dryRun ? [] : try queuedRuns(spec, directory: directory)
        let tasks = spec.points.filter { !fm.fileExists(atPath: "\(directory)/runs/\($0.name)/finished") && !queued.contains($0.name) }
            .map { Task(name: $0.name, overrides: $0.overrides) }
        if !queued.isEmpty { print("sweep \(spec.name): \(queued.count) run(s) queued or running already: \(queued.sorted().joined(separator: ", "))") }
        guard !tasks.isEmpty else {
            print("sweep \(spec.name): no run to submit")
            if !dryRun { try merge(spec, directory: directory) }
            return
        }
        let text = script(spec, tasks: tasks, directory: directory, executable: absolute(executable),
                          workingDirectory: fm.currentDirectoryPath, resources: resources)
        if dryRun { print(text, terminator: ""); return }

        let slurm = "\(directory)/slurm"
        try fm.createDirectory(atPath: slurm, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(directory)/runs", withIntermediateDirectories: true)
        let number = (0...).first { !fm.fileExists(atPath: "\(slurm)/array-\($0).sbatch") }!
        let path = "\(slurm)/array-\(number).sbatch"
        try tasks.map(\.name).joined(separator: "\n").appending("\n").write(toFile: "\(slurm)/array-\(number).runs", atomically: true, encoding: .utf8)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let result = try command("sbatch", ["--parsable", path])
        guard result.status == 0, let job = result.output.split(separator: ";").first.map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }),
              !job.isEmpty, job.allSatisfy(\.isNumber) else {
            throw RunFailure(description: "sbatch \(path) failed (status \(result.status)): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines)). "
                             + "Check the partition, account and time limit (sinfo lists the partitions), then run the same command again")
        }
        try (job + "\n").write(toFile: "\(slurm)/array-\(number).job", atomically: true, encoding: .utf8)
        print("sweep \(spec.name): submitted job array \(job) of \(tasks.count) run(s) (\(tasks.map(\.name).joined(separator: ", "))), script \(path)")
        print("sweep \(spec.name): follow with squeue -n \(jobName(spec)); when they are done, fusion sweep \(CommandLine.arguments.dropFirst(2).first ?? "FILE") --merge "
              + "merges them into \(directory)/results.h5")
    }

    /// Merges every finished run into results.h5 (as the local sweep does) and says where the others stand.
    static func merge(_ spec: SweepSpec, directory: String) throws {
        let fm = FileManager.default
        let queued = try queuedRuns(spec, directory: directory)
        var finished: [String] = [], failed: [String] = [], waiting: [String] = [], notStarted: [String] = []
        for point in spec.points {
            let run = "\(directory)/runs/\(point.name)"
            if fm.fileExists(atPath: "\(run)/finished") { finished.append(point.name) }
            else if queued.contains(point.name) { waiting.append(point.name) }
            else if fm.fileExists(atPath: "\(run)/output.txt") { failed.append(point.name) }
            else { notStarted.append(point.name) }
        }
        try Sweep.merge(spec.points.map(\.name), directory: directory)
        print("sweep \(spec.name): \(finished.count) of \(spec.points.count) run(s) finished")
        if !waiting.isEmpty { print("sweep \(spec.name): queued or running: \(waiting.joined(separator: ", "))") }
        if !failed.isEmpty {
            print("sweep \(spec.name): stopped before finishing (failed, cancelled or out of time): \(failed.joined(separator: ", ")); "
                  + "see runs/NAME/output.txt, then submit again with --slurm: each resumes from its checkpoint")
        }
        if !notStarted.isEmpty { print("sweep \(spec.name): never started: \(notStarted.joined(separator: ", ")) (submit them with --slurm)") }
    }

    /// Runs of the sweep that Slurm holds (pending or running), from `squeue` and the array files; none
    /// where Slurm is not installed.
    static func queuedRuns(_ spec: SweepSpec, directory: String) throws -> Set<String> {
        guard let squeue = ChildProcess.locate("squeue") else { return [] }
        let result = try command(squeue, ["-h", "-r", "-n", jobName(spec), "-o", "%F %K"])
        guard result.status == 0 else {
            throw RunFailure(description: "squeue failed (status \(result.status)): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines)); "
                             + "is the cluster reachable (SLURM_CONF, munge)? Nothing was submitted")
        }
        var arrays: [String: [String]] = [:]
        let slurm = "\(directory)/slurm"
        for file in (try? FileManager.default.contentsOfDirectory(atPath: slurm)) ?? [] where file.hasSuffix(".job") {
            let base = "\(slurm)/\(file.dropLast(4))"
            guard let job = try? String(contentsOfFile: "\(base).job", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
                  let runs = try? String(contentsOfFile: "\(base).runs", encoding: .utf8) else { continue }
            arrays[job] = runs.split(separator: "\n").map(String.init)
        }
        var queued = Set<String>()
        for line in result.output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let runs = arrays[String(fields[0])] else { continue }
            // %K is one task ("3") or, for tasks not yet split off, a range list ("0-2,5" or "4-7%2").
            for part in fields[1].split(separator: "%")[0].split(separator: ",") {
                let bounds = part.split(separator: "-").compactMap { Int($0) }
                guard let low = bounds.first else { continue }
                for index in low...(bounds.last ?? low) where index < runs.count { queued.insert(runs[index]) }
            }
        }
        return queued
    }

    // MARK: Helpers

    private static func absolute(_ path: String) -> String {
        let url = path.hasPrefix("/") ? URL(fileURLWithPath: path) : URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(path)
        return url.standardizedFileURL.path
    }

    /// A word for bash: left as it is when plain, else in single quotes.
    static func shellQuoted(_ word: String) -> String {
        let plain = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
        if !word.isEmpty && word.unicodeScalars.allSatisfy(plain.contains) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Runs a Slurm client command, its stdout and stderr together.
    private static func command(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        guard let executable = name.hasPrefix("/") ? name : ChildProcess.locate(name) else {
            throw RunFailure(description: "\(name) is not on PATH: --slurm needs Slurm's client commands (Debian slurm-client or slurm-wlm)")
        }
        let result = try ChildProcess.run(executable, arguments)
        return (result.ending.status, result.text)
    }
}
