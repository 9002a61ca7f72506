// Fusion against its peer, PyTorch eager on the same CPU (scripts/peers/torch_step.py), at the three
// reference sizes. Each measurement is its own process (so its peak memory is its own), and the two
// sides alternate for `rounds` rounds so that a noisy neighbour hurts both alike; the best round of
// each side is compared.
import Foundation
import Fusion

struct PeerMeasurement {
    let tokensPerSecond: Double
    let secondsPerStep: Double
    let peakResidentBytes: Double
    /// The fastest single step (0 when the peer did not report it).
    let bestSecondsPerStep: Double
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
                           bestSecondsPerStep: values["best_seconds_per_step"] ?? 0, countedFlopsPerStep: values["counted_flops"] ?? 0,
                           allreduceShare: values["allreduce_share"] ?? 0)
}

func runPeerComparison(ceiling: Double, rounds: Int, steps: Int) {
    let python = ".venv-peers/bin/python", script = "scripts/peers/torch_step.py"
    guard FileManager.default.isExecutableFile(atPath: python), FileManager.default.fileExists(atPath: script) else {
        print("bench peer: no PyTorch environment at \(python); run scripts/peers/setup once (it installs torch, CPU build, into .venv-peers)")
        exit(2)
    }
    let me = Bundle.main.executablePath ?? CommandLine.arguments[0]
    print("size   Fusion tokens/s   PyTorch tokens/s   ratio   (fastest step: ratio)   Fusion MFU   (fastest step)   Fusion MiB   PyTorch MiB   (best of \(rounds) alternating rounds, \(steps) steps each)")
    for size in ReferenceSize.all {
        var fusion: [PeerMeasurement] = [], torch: [PeerMeasurement] = []
        for _ in 0..<rounds {
            if let m = runMeasurement(me, ["step", size.name, "--steps", "\(steps)"]) { fusion.append(m) }
            if let m = runMeasurement(python, [script, "--size", size.name, "--steps", "\(steps)"]) { torch.append(m) }
        }
        guard let f = fusion.max(by: { $0.tokensPerSecond < $1.tokensPerSecond }),
              let t = torch.max(by: { $0.tokensPerSecond < $1.tokensPerSecond }) else { continue }
        let fMemory = fusion.map(\.peakResidentBytes).min()! / 1_048_576, tMemory = torch.map(\.peakResidentBytes).min()! / 1_048_576
        // Also the fastest single step of each side over all rounds: the least disturbed figure when
        // other processes share the cores (PyTorch's OpenMP threads suffer most from that).
        let fBest = fusion.map(\.bestSecondsPerStep).filter { $0 > 0 }.min() ?? f.secondsPerStep
        let tBest = torch.map(\.bestSecondsPerStep).filter { $0 > 0 }.min() ?? t.secondsPerStep
        // MFU as in bench's training-step table: the FLOPs Fusion's step counts ÷ its median (or fastest) step ÷ this run's ceiling.
        let mfu = f.countedFlopsPerStep / f.secondsPerStep / 1e9 / ceiling, fastestMFU = f.countedFlopsPerStep / fBest / 1e9 / ceiling
        print(String(format: "%@   %15.0f   %16.0f   %5.2f×   %19.2f×   %8.1f %%   %12.1f %%   %10.0f   %11.0f", size.name, f.tokensPerSecond,
                     t.tokensPerSecond, f.tokensPerSecond / t.tokensPerSecond, tBest / fBest, 100 * mfu, 100 * fastestMFU, fMemory, tMemory))
        record("peer", size.name, numbers: [("fusion_tokens_per_s", f.tokensPerSecond), ("pytorch_tokens_per_s", t.tokensPerSecond),
                                            ("ratio", f.tokensPerSecond / t.tokensPerSecond), ("ratio_fastest_step", tBest / fBest),
                                            ("fusion_best_seconds_per_step", fBest), ("pytorch_best_seconds_per_step", tBest),
                                            ("fusion_mfu", mfu), ("fusion_mfu_fastest_step", fastestMFU),
                                            ("fusion_peak_rss_bytes", fMemory * 1_048_576), ("pytorch_peak_rss_bytes", tMemory * 1_048_576),
                                            ("rounds", Double(rounds)), ("steps", Double(steps))])
    }
}
