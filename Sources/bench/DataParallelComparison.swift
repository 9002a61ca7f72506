// Data parallel against threads on the same cores: the training step at S, M, L as 2 MPI ranks of 1
// thread each (`mpirun -np 2`, each rank half the batch, gradients summed with MPI_Allreduce) against
// 1 process of 2 threads, alternating processes for `rounds` rounds, best round of each compared. The
// ratio says what a data-parallel run costs where threads would do; the allreduce share is the part
// of a rank's step spent communicating, what grows across a network (README, "On a cluster").
import Foundation
import Fusion

func runDataParallelComparison(rounds: Int, steps: Int) {
    let me = Bundle.main.executablePath ?? CommandLine.arguments[0]
    guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        print("bench dataparallel: mpirun is not installed (Debian openmpi-bin; scripts/setup installs it)")
        exit(2)
    }
    let cores = ProcessInfo.processInfo.activeProcessorCount
    print("size   2 ranks × 1 thread tokens/s   1 process × 2 threads tokens/s   ratio   allreduce share of a rank's step   (best of \(rounds) alternating rounds, \(steps) steps each, \(cores) cores)")
    for size in ReferenceSize.all {
        var ranks: [PeerMeasurement] = [], threads: [PeerMeasurement] = []
        for _ in 0..<rounds {
            if let m = runMeasurement(mpirun, ["--allow-run-as-root", "--oversubscribe", "-np", "2", "-x", "FUSION_THREADS=1", me, "step", size.name,
                                               "--steps", "\(steps)"], settings: ["OPENBLAS_NUM_THREADS": "1"]) { ranks.append(m) }
            if let m = runMeasurement(me, ["step", size.name, "--steps", "\(steps)"], settings: ["FUSION_THREADS": "2"]) { threads.append(m) }
        }
        guard let r = ranks.max(by: { $0.tokensPerSecond < $1.tokensPerSecond }),
              let t = threads.max(by: { $0.tokensPerSecond < $1.tokensPerSecond }) else { continue }
        print(String(format: "%@   %25.0f   %30.0f   %5.2f×   %10.1f %%", size.name, r.tokensPerSecond, t.tokensPerSecond,
                     r.tokensPerSecond / t.tokensPerSecond, 100 * r.allreduceShare))
        record("dataparallel", size.name, numbers: [("ranks_tokens_per_s", r.tokensPerSecond), ("threads_tokens_per_s", t.tokensPerSecond),
                                                    ("ratio", r.tokensPerSecond / t.tokensPerSecond), ("allreduce_share", r.allreduceShare),
                                                    ("rounds", Double(rounds)), ("steps", Double(steps))])
    }
}
