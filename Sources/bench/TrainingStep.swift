// Whole training steps of the core at the three reference sizes of issue 7 (vocabulary 1,536,
// context 256, pre-norm, RoPE, SwiGLU with F ≈ 8/3·D, QK-norm, untied head, AdamW), text only so that
// the PyTorch peer (scripts/peers/torch_step.py) builds exactly the same model.
//
// A step is: zero gradients, embed, L blocks, final norm, logits, cross-entropy, backward, AdamW.
// Reported: tokens/s, counted GFLOP/s (the FLOPs the kernels count themselves), MFU = counted FLOP/s ÷
// the sgemm ceiling measured in the same run, the 6·N·D estimate beside it, and the process's peak
// resident memory (meaningful per size only when one size runs per process: `bench step L`).
import Foundation
import Fusion

struct ReferenceSize {
    let name: String, width: Int, layers: Int, heads: Int, batch: Int
    static let vocabulary = 1_536, context = 256
    static let all = [ReferenceSize(name: "S", width: 128, layers: 4, heads: 4, batch: 16),
                      ReferenceSize(name: "M", width: 256, layers: 6, heads: 8, batch: 16),
                      ReferenceSize(name: "L", width: 512, layers: 8, heads: 8, batch: 8)]

    var config: TransformerConfig {
        var c = TransformerConfig()
        c.width = width
        c.layers = layers
        c.heads = heads
        c.vocabularySize = Self.vocabulary
        c.contextLength = Self.context
        c.qkNorm = true
        c.normPlacement = .pre
        return c
    }
}

struct StepResult {
    let size: ReferenceSize
    let secondsPerStep: Double
    let countedFlopsPerStep: Int64
    let estimatedFlopsPerStep: Double  // 6·N·D with N non-embedding parameters
    let peakResidentBytes: Int
    /// The fastest of the timed steps: on a shared machine, the least disturbed one.
    var bestSecondsPerStep: Double = 0
    var tokensPerSecond: Double { Double(size.batch * ReferenceSize.context) / secondsPerStep }
}

/// Peak resident set size of this process so far (Linux reports ru_maxrss in KiB).
func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

/// The share of the last measured step's time spent summing gradients over the ranks (0 in one process).
nonisolated(unsafe) var allreduceShare = 0.0

func measureTrainingStep(_ size: ReferenceSize, steps: Int) -> StepResult {
    let config = size.config
    var generator = RandomGenerator(seed: 0)
    let model = Transformer(config: config, generator: &generator)
    let optimizer = AdamW(parameters: model.namedParameters(), learningRate: 3e-4)
    let (b, t, d) = (size.batch, ReferenceSize.context, size.width)
    var tokens: [Int32] = []
    let vocabulary = Float(ReferenceSize.vocabulary - 1)
    for _ in 0..<(b * (t + 1)) {
        let draw: Float = generator.nextFloat() * vocabulary
        tokens.append(Int32(draw))
    }
    var inputs: [Int32] = [], targets: [Int32] = []
    for row in 0..<b {
        let start: Int = row * (t + 1)
        inputs += tokens[start..<(start + t)]
        targets += tokens[(start + 1)..<(start + t + 1)]
    }
    // Under mpirun, data-parallel as `fusion train` is: this rank's rows, the mean over them weighted
    // by their share of the batch, and the gradients summed over the ranks before the step.
    let world = Communicator.world
    let rows = world.share(of: b), share = rows.lowerBound * t..<rows.upperBound * t
    let (localInputs, localTargets) = (Array(inputs[share]), Array(targets[share]))
    let positions = (0..<(rows.count * t)).map { Int32($0 % t) }
    let masks = Array(repeating: AttentionMask.causal(length: t), count: rows.count)
    var gradients = GradientAllreduce(communicator: world)
    let parameters = model.parameters

    func step() {
        model.zeroGrad()
        let x = model.embed(localInputs).reshaped([rows.count, t, d])
        let hidden = model.hiddenStates(x, positions: positions, masks: masks)
        let loss = crossEntropy(model.logits(hidden.reshaped([rows.count * t, d])), targets: localTargets)
        (world.size == 1 ? loss : loss * (Float(rows.count) / Float(b))).backward()
        gradients.sum(parameters)
        optimizer.step()
    }
    let (times, flops) = timeSteps(step, count: steps)
    allreduceShare = gradients.seconds / max(Double(steps + 3) * times[times.count / 2], 1e-9)
    let estimated = 6 * Double(config.nonEmbeddingParameterCount) * Double(b * t)
    return StepResult(size: size, secondsPerStep: times[times.count / 2], countedFlopsPerStep: flops,
                      estimatedFlopsPerStep: estimated, peakResidentBytes: peakResidentBytes(), bestSecondsPerStep: times[0])
}

/// Runs `step` twice to warm up (the buffer pool fills, BLAS threads start), once to count its FLOPs,
/// then `count` timed times; returns the times sorted (median = times[count / 2]) and the FLOPs.
func timeSteps(_ step: () -> Void, count: Int) -> (times: [Double], flops: Int64) {
    step(); step()
    let flops = FlopCounter.measure(step)
    var times: [Double] = []
    for _ in 0..<count {
        let start = now()
        step()
        times.append(now() - start)
    }
    return (times.sorted(), flops)
}

func printStepHeader() {
    print("training step (text, V 1536, T 256)     ms/step    tokens/s   counted GFLOP/s   MFU   6ND-MFU  peak RSS MiB")
}

func printStep(_ r: StepResult, ceiling: Double) {
    printStepRow(name: "\(r.size.name): d \(r.size.width), \(r.size.layers) layers, \(r.size.heads) heads, B \(r.size.batch)", width: 40,
                 seconds: r.secondsPerStep, tokensPerSecond: r.tokensPerSecond, counted: r.countedFlopsPerStep,
                 estimated: r.estimatedFlopsPerStep, peakBytes: r.peakResidentBytes, ceiling: ceiling)
}

/// One row of a training-step table: ms/step, tokens/s, counted GFLOP/s, MFU (counted and 6·N·D), peak memory.
func printStepRow(name: String, width: Int, seconds: Double, tokensPerSecond: Double, counted: Int64, estimated: Double,
                  peakBytes: Int, ceiling: Double) {
    let rate = Double(counted) / seconds / 1e9
    print(String(format: "%@ %9.1f %11.0f %12.1f %9.1f %% %6.1f %% %10.0f",
                 name.padding(toLength: width, withPad: " ", startingAt: 0), seconds * 1e3, tokensPerSecond, rate,
                 100 * rate / ceiling, 100 * estimated / seconds / 1e9 / ceiling, Double(peakBytes) / 1_048_576))
}
