// Choosing an id from logits, shared by every sampler that emits ids (Chameleon's image codes,
// Show-o's MaskGIT candidates, captions for all three recipes):
//   - restriction to an allowed set of ids (the modality being sampled; everything else gets p = 0),
//   - repetition penalty (Keskar et al. 2019, CTRL, §4.1, in the form Hugging Face uses: a positive
//     logit of an id already generated is divided by θ, a negative one multiplied by θ),
//   - temperature (0 = greedy), top-k (Fan et al. 2018, §5.4) and nucleus / top-p (Holtzman et al.
//     2020, §3.1: the smallest set of most likely ids whose probability mass reaches p),
//   - classifier-free guidance on logits (Ho & Salimans 2022, Eq. 6, applied to logits as Chameleon
//     §2.3, Show-o §3.3 and Transfusion §4.4 do): guided = (1 + s)·conditional − s·unconditional.
//
// Shape alphabet: R rows being sampled, V vocabulary, C allowed ids.
import Foundation

/// How an id is drawn from logits.
public struct TokenSamplingOptions: Equatable, Sendable {
    /// Softmax temperature; 0 picks the most likely id (greedy).
    public var temperature: Float
    /// Keep only the k most likely ids (nil: all).
    public var topK: Int?
    /// Keep only the smallest set of most likely ids whose mass reaches p (nil or ≥ 1: all).
    public var topP: Float?
    /// θ > 1 makes ids already generated in this sample less likely; 1 turns it off.
    public var repetitionPenalty: Float

    /// Options as given; the samplers call `validate()` before using them.
    public init(temperature: Float = 1, topK: Int? = nil, topP: Float? = nil, repetitionPenalty: Float = 1) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.repetitionPenalty = repetitionPenalty
    }

    /// Throws when a value is out of range, naming it and what is allowed.
    public func validate() throws {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError("sampling option " + message) }
        guard temperature >= 0, temperature.isFinite else { throw fail("temperature must be ≥ 0 (0 = greedy), got \(temperature)") }
        if let topK, topK < 1 { throw fail("topK must be ≥ 1 (or unset for all ids), got \(topK)") }
        if let topP, !(topP > 0) { throw fail("topP must be > 0 (1 or unset keeps every id), got \(topP)") }
        guard repetitionPenalty > 0, repetitionPenalty.isFinite else {
            throw fail("repetitionPenalty must be > 0 (1 turns it off), got \(repetitionPenalty)")
        }
    }

    public static let greedy = TokenSamplingOptions(temperature: 0)
}

/// Classifier-free guidance on one logit: (1 + s)·conditional − s·unconditional (s = 0: conditional).
/// Fusion's s is w − 1 for the w of u + w·(c − u) in the Transfusion (§4.1) and Imagen papers: our s = 2
/// is their w = 3, and our s = 0 their w = 1 (no guidance).
@inline(__always)
public func guidedLogit(conditional: Float, unconditional: Float, scale: Float) -> Float {
    (1 + scale) * conditional - scale * unconditional
}

/// Guided logits [R, V] from conditional and unconditional logits [R, V] (one fused pass).
public func guidedLogits(conditional: Tensor, unconditional: Tensor, scale: Float) -> Tensor {
    precondition(conditional.shape == unconditional.shape,
                 "guidedLogits: conditional \(conditional.shape) vs unconditional \(unconditional.shape)")
    let out = Tensor(uninitializedShape: conditional.shape)
    let c = conditional.data, u = unconditional.data, o = out.data
    withExtendedLifetime((conditional, unconditional)) {
        for i in 0..<out.count { o[i] = guidedLogit(conditional: c[i], unconditional: u[i], scale: scale) }
    }
    return out
}

/// Draws ids from rows of logits, restricted to a fixed set of allowed ids. Holds its scratch
/// buffers, so one sampler serves a whole sampling loop without allocating per id.
public struct TokenSampler {
    public let options: TokenSamplingOptions
    /// The allowed ids, ascending (C of them).
    public let allowed: [Int32]
    /// slot[id] = index of id in `allowed`, or −1.
    private let slot: [Int32]
    // Scratch [C]: adjusted logits, then probabilities; an order of slots for top-k/top-p.
    private var values: [Float]
    private var order: [Int32]

    /// `allowed`: the ids that may be drawn, all inside 0..<vocabularySize.
    public init(options: TokenSamplingOptions, allowed: [Int32], vocabularySize: Int) {
        precondition((try? options.validate()) != nil, "TokenSampler: invalid \(options); call options.validate() first")
        let sorted = Array(Set(allowed)).sorted()
        precondition(!sorted.isEmpty, "TokenSampler: no allowed ids")
        precondition(sorted.first! >= 0 && Int(sorted.last!) < vocabularySize,
                     "TokenSampler: allowed ids \(sorted.first!)…\(sorted.last!) outside the vocabulary 0..<\(vocabularySize)")
        self.options = options
        self.allowed = sorted
        var slot = [Int32](repeating: -1, count: vocabularySize)
        for (i, id) in sorted.enumerated() { slot[Int(id)] = Int32(i) }
        self.slot = slot
        values = [Float](repeating: 0, count: sorted.count)
        order = (0..<Int32(sorted.count)).map { $0 }
    }

    public init(options: TokenSamplingOptions, allowed: Range<Int32>, vocabularySize: Int) {
        self.init(options: options, allowed: Array(allowed), vocabularySize: vocabularySize)
    }

    /// The distribution an id is drawn from, over `allowed` (C values, summing to 1), for V logits:
    /// after the repetition penalty on `history`, the temperature, top-k and top-p. With temperature 0
    /// it is one-hot on the most likely id. With `logProbabilities` ([C]) also writes log p(id) of every
    /// allowed id *before* the temperature and the filters (what MaskGIT ranks its candidates by).
    public mutating func distribution(logits: UnsafePointer<Float>, history: ArraySlice<Int32> = [],
                                      logProbabilities: UnsafeMutablePointer<Float>? = nil) -> [Float] {
        prepare(logits: logits, history: history, logProbabilities: logProbabilities)
        return values
    }

    /// Draws one id from V logits; returns it with its log-probability before temperature and filters
    /// (within the allowed set, after the repetition penalty).
    public mutating func sample(logits: UnsafePointer<Float>, history: ArraySlice<Int32> = [],
                                generator: inout RandomGenerator) -> (id: Int32, logProbability: Float) {
        let logZ = prepare(logits: logits, history: history, logProbabilities: nil)
        var chosen = values.count - 1
        if options.temperature == 0 {
            chosen = Int(order[0])
        } else {
            let u = generator.nextFloat()
            var cumulative: Float = 0
            for i in 0..<values.count where values[i] > 0 {
                chosen = i
                cumulative += values[i]
                if u < cumulative { break }
            }
        }
        return (allowed[chosen], rawLogits[chosen] - logZ)
    }

    /// Penalised logits of the allowed ids (kept for `sample`'s log-probability).
    private var rawLogits: [Float] = []
    /// Which allowed ids the repetition penalty has already touched in this call (reset after).
    private var penalised: [Bool] = []

    /// Fills `values` with the sampling distribution and `order` with slots sorted by decreasing
    /// probability (fully only when top-k/top-p need it; order[0] is always the most likely).
    /// Returns log Z of the penalised, untempered logits.
    @discardableResult
    private mutating func prepare(logits: UnsafePointer<Float>, history: ArraySlice<Int32>,
                                  logProbabilities: UnsafeMutablePointer<Float>?) -> Float {
        let c = allowed.count
        if rawLogits.count != c { rawLogits = [Float](repeating: 0, count: c) }
        for i in 0..<c { rawLogits[i] = logits[Int(allowed[i])] }
        if options.repetitionPenalty != 1 {
            if penalised.count != c { penalised = [Bool](repeating: false, count: c) }
            for id in history where id >= 0 && Int(id) < slot.count && slot[Int(id)] >= 0 {
                let i = Int(slot[Int(id)])
                guard !penalised[i] else { continue }  // once per id, however often it occurred
                penalised[i] = true
                rawLogits[i] = rawLogits[i] > 0 ? rawLogits[i] / options.repetitionPenalty : rawLogits[i] * options.repetitionPenalty
            }
            for id in history where id >= 0 && Int(id) < slot.count && slot[Int(id)] >= 0 { penalised[Int(slot[Int(id)])] = false }
        }
        var best = 0
        for i in 1..<max(c, 1) where rawLogits[i] > rawLogits[best] { best = i }
        let peak = rawLogits[best]
        var total: Float = 0
        for i in 0..<c { total += Foundation.exp(rawLogits[i] - peak) }
        let logZ = peak + Foundation.log(total)
        if let logProbabilities { for i in 0..<c { logProbabilities[i] = rawLogits[i] - logZ } }

        if options.temperature == 0 {
            for i in 0..<c { values[i] = i == best ? 1 : 0 }
            order[0] = Int32(best)
            return logZ
        }
        // Tempered softmax.
        var sum: Float = 0
        for i in 0..<c { values[i] = Foundation.exp((rawLogits[i] - peak) / options.temperature); sum += values[i] }
        for i in 0..<c { values[i] /= sum }
        order[0] = Int32(best)
        let k = min(options.topK ?? c, c), p = options.topP ?? 1
        guard k < c || p < 1 else { return logZ }
        for i in 0..<c { order[i] = Int32(i) }
        values.withUnsafeBufferPointer { probabilities in
            order.sort { probabilities[Int($0)] > probabilities[Int($1)] || (probabilities[Int($0)] == probabilities[Int($1)] && $0 < $1) }
        }
        // Keep the first `kept` slots of the order: at most k, and no more than the smallest prefix
        // whose mass reaches p.
        var kept = 0, mass: Float = 0
        while kept < k {
            mass += values[Int(order[kept])]
            kept += 1
            if mass >= p { break }
        }
        var keptMass: Float = 0
        for rank in 0..<c {
            let i = Int(order[rank])
            if rank < kept { keptMass += values[i] } else { values[i] = 0 }
        }
        for rank in 0..<kept { values[Int(order[rank])] /= keptMass }
        return logZ
    }
}
