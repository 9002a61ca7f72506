// The bench's figures written to HDF5 (`--out runs/bench/bench.h5`), readable with h5py:
//
//   /                      attributes: schema, created, git_commit, machine, openblas, ceiling_gflops
//   /ceiling/NNN           one group per sgemm size: n, gflops (the better of fusion_gflops and
//                          openblas_threads_gflops: Fusion's panels and OpenBLAS's threading)
//   /kernels/NNN           name, milliseconds, gflops, share_of_ceiling
//   /threading/NNN         name, m, n, k, panels_gflops, openblas_threads_gflops (each product of a step)
//   /steps/S|M|L           text-only core step: width, layers, heads, batch, tokens, seconds_per_step,
//                          tokens_per_s, counted_flops, counted_gflops, mfu, estimated_6nd_mfu, peak_rss_bytes
//   /recipe_steps/R_S      the same for each recipe's whole training step (R = chameleon, showo, transfusion)
//   /sampling/R            method, images, forward_passes (per sampling call), seconds_per_image, gflops
//   /peer/S|M|L            fusion_tokens_per_s, pytorch_tokens_per_s, ratio, fusion_/pytorch_peak_rss_bytes
//
// One group per row, every figure an attribute (`f['/steps/L'].attrs['mfu']`); rows are numbered in
// the order they ran, so a table reads back in the printed order. MFU values are fractions (0–1).
import Foundation
import Fusion

/// One row of a table: a name and its figures.
struct BenchRow {
    let table: String, key: String
    var numbers: [(String, Double)] = []
    var strings: [(String, String)] = []
}

/// Rows gathered as the bench runs, written once at the end (a crash leaves no half-written file).
nonisolated(unsafe) var benchRows: [BenchRow] = []

func record(_ table: String, _ key: String, numbers: [(String, Double)], strings: [(String, String)] = []) {
    benchRows.append(BenchRow(table: table, key: key, numbers: numbers, strings: strings))
}

func stepNumbers(seconds: Double, tokens: Int, flops: Int64, estimated: Double, peak: Int, ceiling: Double) -> [(String, Double)] {
    let rate = Double(flops) / seconds / 1e9
    return [("tokens", Double(tokens)), ("seconds_per_step", seconds), ("tokens_per_s", Double(tokens) / seconds),
            ("counted_flops", Double(flops)), ("counted_gflops", rate), ("mfu", rate / ceiling),
            ("estimated_6nd_flops", estimated), ("estimated_6nd_mfu", estimated / seconds / 1e9 / ceiling),
            ("peak_rss_bytes", Double(peak))]
}

func writeBenchResults(to path: String, ceiling: Double) throws {
    let directory = (path as NSString).deletingLastPathComponent
    if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    let file = try HDF5File.create(path, overwrite: true)
    let root = file.root
    try root.setAttribute("schema", "fusion-bench/1")
    try root.setAttribute("created", ISO8601DateFormatter().string(from: Date()))
    try root.setAttribute("git_commit", SourceRevision.gitCommit)
    try root.setAttribute("machine", "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.hostName)")
    try root.setAttribute("openblas", BLAS.configuration)
    try root.setAttribute("ceiling_gflops", ceiling)
    var tables: [String: HDF5Group] = [:], counts: [String: Int] = [:]
    for row in benchRows {
        let table: HDF5Group
        if let existing = tables[row.table] { table = existing } else {
            table = try root.createGroup(row.table)
            tables[row.table] = table
        }
        let index = counts[row.table, default: 0]
        counts[row.table] = index + 1
        let group = try table.createGroup(row.key.isEmpty ? String(format: "%03d", index) : row.key)
        try group.setAttribute("order", index)
        for (name, value) in row.strings { try group.setAttribute(name, value) }
        for (name, value) in row.numbers { try group.setAttribute(name, value) }
    }
    try file.close()
    print("bench: wrote \(benchRows.count) rows to \(path)")
}
