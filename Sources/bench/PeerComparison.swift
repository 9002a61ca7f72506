// Fusion against its peer, the strongest PyTorch a user would run on the same CPU
// (scripts/peers/torch_step.py: F.rms_norm, fused QKV, SDPA, fused AdamW), eager and under torch.compile,
// at the three reference sizes. Each measurement is its own process (so its peak memory is its own),
// and the three alternate for `rounds` rounds so that a noisy neighbour hurts all alike; a ratio is taken
// within a round, and the median over rounds is reported.
import Foundation
import Fusion

struct PeerMeasurement {
    let tokensPerSecond: Double
    let secondsPerStep: Double
    let peakResidentBytes: Double
    /// FLOPs a step counts itself (Fusion only; 0 for the peer).
    let countedFlopsPerStep: Double
    /// The share of a data-parallel step spent summing gradients over the ranks (0 in one process).
    var allreduceShare = 0.0
}

/// Runs a command and parses its `RESULT key=value …` line; `settings` are added to the environment.
func runMeasurement(_ executable: String, _ arguments: [String], settings: [String: String] = [:]) -> PeerMeasurement? {
    // Two threads each: PyTorch's through OpenMP (the peer script also sets torch's thread count);
    // Fusion runs OpenBLAS on its own two threads (Parallel.threadCount, the machine's cores).
    var environment = ProcessInfo.processInfo.environment
    environment["OMP_NUM_THREADS"] = "2"
    environment["OPENBLAS_NUM_THREADS"] = "2"
    environment.merge(settings) { $1 }
    let result: ChildProcess.Result
    do { result = try ChildProcess.run(executable, arguments, environment: environment, standardError: .inherited) } catch {
        print("bench peer: cannot run \(executable): \(error)")
        return nil
    }
    guard result.ending.succeeded, let line = result.text.split(separator: "\n").last(where: { $0.hasPrefix("RESULT") }) else {
        print("bench peer: \(executable) \(arguments.joined(separator: " ")) failed (\(result.ending.description)):\n\(result.text)")
        return nil
    }
    var values: [String: Double] = [:]
    for field in line.split(separator: " ").dropFirst() {
        let parts = field.split(separator: "=", maxSplits: 1)
        if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
    }
    guard let tokens = values["tokens_per_s"], let seconds = values["seconds_per_step"], let peak = values["peak_rss_bytes"] else {
        print("bench peer: no tokens_per_s/seconds_per_step/peak_rss_bytes in: \(line)")
        return nil
    }
    return PeerMeasurement(tokensPerSecond: tokens, secondsPerStep: seconds, peakResidentBytes: peak,
                           countedFlopsPerStep: values["counted_flops"] ?? 0,
                           allreduceShare: values["allreduce_share"] ?? 0)
}

func runPeerComparison(ceiling: Double, rounds: Int, steps: Int) {
    let python = ".venv-peers/bin/python", script = "scripts/peers/torch_step.py"
    guard FileManager.default.isExecutableFile(atPath: python), FileManager.default.fileExists(atPath: script) else {
        print("bench peer: no PyTorch environment at \(python); run scripts/peers/setup once (it installs torch, CPU build, into .venv-peers)")
        exit(2)
    }
    let me = Bundle.main.executablePath ?? CommandLine.arguments[0]
    func median(_ values: [Double]) -> Double { let sorted = values.sorted(); return sorted.isEmpty ? .nan : sorted[sorted.count / 2] }
    print("size   Fusion tokens/s   eager tokens/s   compiled tokens/s   ÷ eager   ÷ compiled   Fusion MFU   peak MiB: Fusion / eager / compiled"
          + "   (medians of \(rounds) alternating rounds, \(steps) steps each; ratios within a round)")
    for size in ReferenceSize.all {
        // One round: Fusion, PyTorch eager, PyTorch compiled, each its own process, back to back.
        var rows: [(fusion: PeerMeasurement, eager: PeerMeasurement, compiled: PeerMeasurement)] = []
        for _ in 0..<rounds {
            guard let f = runMeasurement(me, ["step", size.name, "--steps", "\(steps)"]),
                  let e = runMeasurement(python, [script, "--size", size.name, "--steps", "\(steps)"]),
                  let c = runMeasurement(python, [script, "--size", size.name, "--steps", "\(steps)", "--compile"]) else { continue }
            rows.append((f, e, c))
        }
        guard !rows.isEmpty else { continue }
        let fusion = median(rows.map(\.fusion.tokensPerSecond)), eager = median(rows.map(\.eager.tokensPerSecond))
        let compiled = median(rows.map(\.compiled.tokensPerSecond))
        let overEager = median(rows.map { $0.fusion.tokensPerSecond / $0.eager.tokensPerSecond })
        let overCompiled = median(rows.map { $0.fusion.tokensPerSecond / $0.compiled.tokensPerSecond })
        // MFU as in bench's training-step table: the FLOPs Fusion's step counts ÷ its median step ÷ this run's ceiling.
        let mfu = median(rows.map { $0.fusion.countedFlopsPerStep / $0.fusion.secondsPerStep / 1e9 / ceiling })
        let memory = [rows.map(\.fusion), rows.map(\.eager), rows.map(\.compiled)].map { $0.map(\.peakResidentBytes).min()! / 1_048_576 }
        print(String(format: "%@   %15.0f   %14.0f   %17.0f   %6.2f×   %9.2f×   %8.1f %%   %.0f / %.0f / %.0f", size.name, fusion, eager, compiled,
                     overEager, overCompiled, 100 * mfu, memory[0], memory[1], memory[2]))
        record("peer", size.name, numbers: [("fusion_tokens_per_s", fusion), ("eager_tokens_per_s", eager), ("compiled_tokens_per_s", compiled),
                                            ("ratio_eager", overEager), ("ratio_compiled", overCompiled), ("fusion_mfu", mfu),
                                            ("fusion_peak_rss_bytes", memory[0] * 1_048_576), ("eager_peak_rss_bytes", memory[1] * 1_048_576),
                                            ("compiled_peak_rss_bytes", memory[2] * 1_048_576),
                                            ("rounds", Double(rows.count)), ("steps", Double(steps))])
    }
}
