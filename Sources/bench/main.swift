// bench: kernel and training-step throughput as a share of this machine's own sgemm ceiling, measured
// in the same run, and the training step against the PyTorch peer.
//
//   swift run -c release bench                 # ceiling, every kernel, a training step at S, M, L
//   swift run -c release bench attention norm  # only kernels/steps whose name contains a word given
//   swift run -c release bench --seconds 2     # time budget per kernel (default 1)
//   swift run -c release bench step L          # one training step size alone (its peak memory is its own)
//   swift run -c release bench threading       # each product of a step: Fusion's panels vs OpenBLAS's threads
//   swift run -c release bench peer            # Fusion vs PyTorch, alternating, one process per run
//                                              # (needs scripts/peers/setup once)
//   swift run -c release bench dataparallel    # 2 MPI ranks × 1 thread vs 1 process × 2 threads, S, M, L
//   swift run -c release bench recipe          # each recipe's training step at S, M, L ("recipe showo L"
//                                              # filters), and image sampling at its defaults ("sample")
//   … --out runs/bench/bench.h5                # also write every figure to HDF5 (BenchResults.swift)
//
// Every kernel is timed forward + backward where it has one; FLOPs are the ones the kernels count
// themselves (FlopCounter), so the share is "useful FLOP/s ÷ best sgemm FLOP/s". Ratios, not times,
// are what to compare across runs: the machines are shared and noisy.
import Foundation
import Fusion

setvbuf(stdout, nil, _IOLBF, 0)  // each line as it is printed, also to a file or a pipe
var filters: [String] = []
var secondsPerKernel = 1.0
var stepsPerSize = 5
var rounds = 3
var mode = "all"
var stepSize: String? = nil
var outputPath: String? = nil
var arguments = CommandLine.arguments.dropFirst()
func usage() -> Never {
    print("usage: bench [--seconds S] [--steps N] [--out FILE.h5] [NAME-FILTER ...] | bench step S|M|L [--steps N] | bench peer|dataparallel [--rounds R] [--steps N] [--out FILE.h5]")
    exit(2)
}
if ["step", "peer", "dataparallel"].contains(arguments.first) { mode = arguments.removeFirst() }
if mode == "step" {
    guard let name = arguments.popFirst(), ReferenceSize.all.contains(where: { $0.name == name }) else { usage() }
    stepSize = name
}
while let argument = arguments.popFirst() {
    switch argument {
    case "--seconds", "--steps", "--rounds":
        guard let value = arguments.popFirst().flatMap(Double.init), value > 0 else {
            print("bench: \(argument) needs a positive number"); exit(2)
        }
        if argument == "--seconds" { secondsPerKernel = value } else if argument == "--steps" { stepsPerSize = Int(value) } else { rounds = Int(value) }
    case "--out":
        guard let path = arguments.popFirst() else { print("bench: --out needs a file path"); exit(2) }
        outputPath = path
    case "-h", "--help": usage()
    default:
        guard mode == "all" else { usage() }
        filters.append(argument.lowercased())
    }
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Runs `body` repeatedly for about `secondsPerKernel`; returns the best time of one call and the
/// FLOPs one call counts.
func measure(_ body: () -> Void) -> (seconds: Double, flops: Int64) {
    body()  // warm-up: page in buffers, spin up BLAS threads
    let flops = FlopCounter.measure(body)
    var best = Double.infinity
    let deadline = now() + secondsPerKernel
    var runs = 0
    while runs < 3 || now() < deadline {
        let start = now()
        body()
        best = min(best, now() - start)
        runs += 1
    }
    return (best, flops)
}

func random(_ shape: [Int], seed: UInt64, requiresGrad: Bool = false) -> Tensor {
    var state = seed
    let t = Tensor(uninitializedShape: shape)
    for i in 0..<t.count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        t.data[i] = Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
    }
    t.requiresGrad = requiresGrad
    return t
}

/// Forward + backward of `f` from a fixed cotangent.
func forwardBackward(_ inputs: [Tensor], _ f: @escaping () -> Tensor) -> () -> Void {
    {
        for x in inputs { x.zeroGrad() }
        let y = f()
        y.backward(gradient: Tensor(repeating: 1e-3, shape: y.shape))
    }
}

// A single training-step size, for the peer comparison: one machine-readable line.
if mode == "step", let name = stepSize, let size = ReferenceSize.all.first(where: { $0.name == name }) {
    let r = measureTrainingStep(size, steps: stepsPerSize)
    let world = Communicator.world
    if world.isRoot {
        print("RESULT size=\(name) seconds_per_step=\(r.secondsPerStep) tokens_per_s=\(r.tokensPerSecond) "
              + "counted_flops=\(r.countedFlopsPerStep) peak_rss_bytes=\(r.peakResidentBytes) best_seconds_per_step=\(r.bestSecondsPerStep) "
              + "ranks=\(world.size) allreduce_share=\(allreduceShare)")
    }
    world.finalize()
    exit(0)
}

// MARK: - The ceiling

print("Fusion bench: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(Parallel.threadCount) threads")
// The ceiling is the better of Fusion's own panels over the cores (`BLAS.sgemm`) and OpenBLAS's threading
// on the same number of threads, so neither way of running sgemm makes the other look better than it is.
var ceiling = 0.0
for n in [512, 1024, 2048] {
    let a = random([n, n], seed: 1), b = random([n, n], seed: 2), c = Tensor(uninitializedShape: [n, n])
    let product = { BLAS.sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n) }
    let (seconds, flops) = measure(product)
    let (openBLASSeconds, _) = BLAS.withOpenBLASThreads(Parallel.threadCount) { measure(product) }
    let rate = Double(flops) / seconds / 1e9, openBLASRate = Double(flops) / openBLASSeconds / 1e9
    ceiling = max(ceiling, rate, openBLASRate)
    record("ceiling", "", numbers: [("n", Double(n)), ("gflops", max(rate, openBLASRate)), ("fusion_gflops", rate),
                                    ("openblas_threads_gflops", openBLASRate)])
    print(String(format: "sgemm %4d³  Fusion's panels %8.1f, OpenBLAS threads %8.1f GFLOP/s", n, rate, openBLASRate))
}
print(String(format: "ceiling (best sgemm)                 %8.1f GFLOP/s\n", ceiling))

/// Writes the HDF5 file when `--out` was given.
func finish() {
    guard let outputPath else { return }
    do { try writeBenchResults(to: outputPath, ceiling: ceiling) } catch {
        print("bench: could not write \(outputPath): \(error)")
        exit(1)
    }
}

if mode == "peer" { runPeerComparison(ceiling: ceiling, rounds: rounds, steps: stepsPerSize); finish(); exit(0) }
if mode == "dataparallel" { runDataParallelComparison(rounds: rounds, steps: stepsPerSize); finish(); exit(0) }

// MARK: - Kernels

struct Kernel { let name: String; let run: () -> Void }
var kernels: [Kernel] = []

// The core's matrix-product shapes: tokens N = B·T = 16·256, widths d = 128, 256, 512.
for d in [128, 256, 512] {
    let n = 4096, hidden = (8 * d / 3 + 63) / 64 * 64
    let x = random([n, d], seed: 3, requiresGrad: true)
    let wq = random([d, d], seed: 4, requiresGrad: true), wUp = random([hidden, d], seed: 5, requiresGrad: true)
    kernels.append(Kernel(name: "linear d=\(d) [\(n)×\(d)]·[\(d)×\(d)] fwd+bwd", run: forwardBackward([x, wq]) { linear(x, wq) }))
    kernels.append(Kernel(name: "linear d=\(d) [\(n)×\(d)]·[\(d)×\(hidden)] fwd+bwd", run: forwardBackward([x, wUp]) { linear(x, wUp) }))
}

// Attention at the reference sizes' shapes: B=16, T=256 with Dh = 32 (S) and 32 (M), B=8 with Dh=64 (L).
for (b, h, dh) in [(16, 4, 32), (16, 8, 32), (8, 8, 64)] {
    let t = 256
    let q = random([b, t, h, dh], seed: 6, requiresGrad: true), k = random([b, t, h, dh], seed: 7, requiresGrad: true)
    let v = random([b, t, h, dh], seed: 8, requiresGrad: true)
    let causal = Array(repeating: AttentionMask.causal(length: t), count: b)
    // Two documents per sequence, each a caption then a 64-position image with full attention inside.
    var documents = [Int32](repeating: 0, count: t), spans = [Int32](repeating: -1, count: t)
    for i in 0..<t { documents[i] = i < t / 2 ? 0 : 1 }
    for i in 32..<96 { spans[i] = 0 }
    for i in 160..<224 { spans[i] = 0 }
    let packedCausal = Array(repeating: AttentionMask(documentIDs: documents), count: b)
    let packed = Array(repeating: AttentionMask(documentIDs: documents, spanIDs: spans), count: b)
    let full = Array(repeating: AttentionMask(documentIDs: [Int32](repeating: 0, count: t), spanIDs: [Int32](repeating: 0, count: t)), count: b)
    for (kind, masks) in [("causal", causal), ("packed docs", packedCausal), ("packed+image spans", packed), ("bidirectional", full)] {
        kernels.append(Kernel(name: "attention B=\(b) T=\(t) H=\(h) Dh=\(dh) \(kind) fwd+bwd",
                              run: forwardBackward([q, k, v]) { attention(query: q, key: k, value: v, masks: masks) }))
        kernels.append(Kernel(name: "attention B=\(b) T=\(t) H=\(h) Dh=\(dh) \(kind) fwd",
                              run: { _ = withoutGradients { attention(query: q, key: k, value: v, masks: masks) } }))
    }
}

// Element-wise and row-wise kernels at the M size (N = 4096 tokens, d = 256, V = 1536).
do {
    let n = 4096, d = 256, vocabulary = 1536
    let x = random([n, d], seed: 9, requiresGrad: true), w = random([d], seed: 10, requiresGrad: true)
    let bias = random([d], seed: 11, requiresGrad: true)
    let gate = random([n, 4 * d], seed: 12, requiresGrad: true), up = random([n, 4 * d], seed: 13, requiresGrad: true)
    let heads = random([16, 256, 8, 32], seed: 14, requiresGrad: true)
    let logits = random([n, vocabulary], seed: 15, requiresGrad: true)
    let targets = (0..<n).map { Int32($0 * 7 % vocabulary) }
    let positions = (0..<256).map { Int32($0) }
    kernels.append(Kernel(name: "rmsNorm [\(n)×\(d)] fwd+bwd", run: forwardBackward([x, w]) { rmsNorm(x, weight: w) }))
    kernels.append(Kernel(name: "layerNorm [\(n)×\(d)] fwd+bwd", run: forwardBackward([x, w, bias]) { layerNorm(x, weight: w, bias: bias) }))
    kernels.append(Kernel(name: "swiglu [\(n)×\(4 * d)] fwd+bwd", run: forwardBackward([gate, up]) { swiglu(gate, up) }))
    // The core's own forms: SwiGLU on the stacked gate/up output [N, 2F], QK-norm + RoPE on packed Q/K/V.
    let hidden = (8 * d / 3 + 63) / 64 * 64
    let gateAndUp = random([n, 2 * hidden], seed: 22, requiresGrad: true)
    kernels.append(Kernel(name: "swiglu(gateAndUp:) [\(n)×\(2 * hidden)] fwd+bwd", run: forwardBackward([gateAndUp]) { swiglu(gateAndUp: gateAndUp) }))
    kernels.append(Kernel(name: "rotaryEmbedding [16×256×8×32] fwd+bwd", run: forwardBackward([heads]) { rotaryEmbedding(heads, positions: positions) }))
    let qkv = random([16, 256, 3, 8, 32], seed: 23, requiresGrad: true)
    let queryNorm = random([32], seed: 24, requiresGrad: true), keyNorm = random([32], seed: 25, requiresGrad: true)
    let tokenPositions = (0..<n).map { Int32($0 % 256) }
    kernels.append(Kernel(name: "rotaryQKV (QK-norm + RoPE) [16×256×3×8×32] fwd+bwd", run: forwardBackward([qkv, queryNorm, keyNorm]) {
        rotaryQKV(qkv, queryNorm: queryNorm, keyNorm: keyNorm, positions: tokenPositions, base: 10_000)
    }))
    kernels.append(Kernel(name: "softmax [\(n)×\(vocabulary)] fwd+bwd", run: forwardBackward([logits]) { logits.softmax() }))
    kernels.append(Kernel(name: "crossEntropy [\(n)×\(vocabulary)] fwd+bwd", run: forwardBackward([logits]) { crossEntropy(logits, targets: targets) }))
    kernels.append(Kernel(name: "add (residual) [\(n)×\(d)] fwd+bwd", run: forwardBackward([x, gate]) { x + x }))
}

// The autoencoders' convolutions: 3×3, 64 → 64 channels on 32×32 images, and GroupNorm over them.
do {
    let x = random([16, 64, 32, 32], seed: 16, requiresGrad: true), w = random([64, 64, 3, 3], seed: 17, requiresGrad: true)
    let bias = random([64], seed: 18, requiresGrad: true), gain = random([64], seed: 19, requiresGrad: true)
    kernels.append(Kernel(name: "conv2d 3×3 [16×64×32×32] → 64 fwd+bwd", run: forwardBackward([x, w, bias]) { conv2d(x, weight: w, bias: bias, padding: 1) }))
    let small = random([16, 64, 16, 16], seed: 20, requiresGrad: true), wt = random([64, 64, 4, 4], seed: 21, requiresGrad: true)
    kernels.append(Kernel(name: "convTranspose2d 4×4/2 [16×64×16×16] → 64 fwd+bwd",
                          run: forwardBackward([small, wt]) { convTranspose2d(small, weight: wt, bias: nil, stride: 2, padding: 1) }))
    kernels.append(Kernel(name: "groupNorm 32 groups [16×64×32×32] fwd+bwd", run: forwardBackward([x, gain, bias]) { groupNorm(x, groups: 32, weight: gain, bias: bias) }))
}

print("kernel                                                         ms      GFLOP/s   share of ceiling")
for kernel in kernels where filters.isEmpty || filters.contains(where: { kernel.name.lowercased().contains($0) }) {
    let (seconds, flops) = measure(kernel.run)
    let rate = Double(flops) / seconds / 1e9
    let padded = kernel.name.padding(toLength: 60, withPad: " ", startingAt: 0)
    print(String(format: "%@ %8.2f %10.1f %10.1f %%", padded, seconds * 1e3, rate, 100 * rate / ceiling))
    record("kernels", "", numbers: [("milliseconds", seconds * 1e3), ("gflops", rate), ("share_of_ceiling", rate / ceiling)],
           strings: [("name", kernel.name)])
}

// MARK: - Threading: Fusion's panels against OpenBLAS's threads on the step's products

runThreadingComparison(ReferenceSize.all.flatMap(CoreProduct.ofStep).filter { product in
    filters.isEmpty || filters.contains { "threading \(product.name)".lowercased().contains($0) }
})

// MARK: - Training steps

let sizes = ReferenceSize.all.filter { size in filters.isEmpty || filters.contains { "step \(size.name)".lowercased().contains($0) } }
if !sizes.isEmpty {
    print("")
    printStepHeader()
    for size in sizes {
        let r = measureTrainingStep(size, steps: stepsPerSize)
        printStep(r, ceiling: ceiling)
        record("steps", size.name, numbers: [("width", Double(size.width)), ("layers", Double(size.layers)), ("heads", Double(size.heads)),
                                             ("batch", Double(size.batch))]
               + stepNumbers(seconds: r.secondsPerStep, tokens: size.batch * ReferenceSize.context, flops: r.countedFlopsPerStep,
                             estimated: r.estimatedFlopsPerStep, peak: r.peakResidentBytes, ceiling: ceiling))
    }
}

// MARK: - Recipes: training steps and sampling

let recipeRuns = RecipeConfig.generationRecipes.flatMap { recipe in ReferenceSize.all.map { (recipe, $0) } }.filter { recipe, size in
    filters.isEmpty || filters.contains { "recipe \(recipe) \(size.name)".lowercased().contains($0) }
}
if !recipeRuns.isEmpty {
    print("")
    printRecipeStepHeader()
    for (recipe, size) in recipeRuns {
        let r = measureRecipeStep(recipe, size: size, steps: stepsPerSize)
        printRecipeStep(r, ceiling: ceiling)
        record("recipe_steps", "\(recipe)_\(size.name)",
               numbers: [("width", Double(size.width)), ("layers", Double(size.layers)), ("heads", Double(size.heads)),
                         ("batch", Double(size.batch))]
               + stepNumbers(seconds: r.secondsPerStep, tokens: r.tokens, flops: r.countedFlopsPerStep,
                             estimated: r.estimatedFlopsPerStep, peak: r.peakResidentBytes, ceiling: ceiling),
               strings: [("recipe", recipe), ("size", size.name)])
    }
}

let samplingRuns = RecipeConfig.generationRecipes.filter { recipe in filters.isEmpty || filters.contains { "sample \(recipe)".contains($0) } }
if !samplingRuns.isEmpty {
    print("")
    printSamplingHeader()
    for recipe in samplingRuns {
        let r = measureSampling(recipe, repeats: 2)
        printSampling(r)
        record("sampling", recipe, numbers: [("images", Double(r.images)), ("forward_passes", Double(r.forwardPasses)),
                                             ("seconds_per_image", r.secondsPerImage),
                                             ("gflops", Double(r.countedFlops) / r.seconds / 1e9)],
               strings: [("recipe", recipe), ("method", r.method)])
    }
}
finish()
