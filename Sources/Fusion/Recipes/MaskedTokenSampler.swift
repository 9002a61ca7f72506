// Show-o's image sampling (arXiv 2408.12528, §3.3 "inference"): iterative parallel decoding, MaskGIT
// (Chang et al. 2022, §3.2). The image starts all MASK. Each of S steps:
//   1. one forward pass over the image positions, which attend to the cached prompt and fully to each
//      other (the prompt "caption BOI" is prefilled once; the image positions are re-run every step
//      with `commit: false`, so the cache keeps just the prompt);
//   2. for every masked position, a candidate code is drawn from the (guided) logits restricted to the
//      image codes; its confidence is its log-probability plus Gumbel noise of temperature
//      τ·(1 − (s+1)/S), annealed to 0 so that late steps keep the truly most confident;
//   3. positions decided at earlier steps stay (infinite confidence); of the rest, the least confident
//      are masked again so that n·r((s+1)/S) remain masked (the mask schedule, `MaskSchedule.swift`;
//      at least one fewer than before), and the last step keeps everything.
// Classifier-free guidance: conditional and unconditional (empty-caption) rows read the same partial
// image in one batch; candidates come from (1 + s)·conditional − s·unconditional logits (Show-o §3.3).
//
// Shape alphabet: n prompts, R = n or 2n rows, P = h·w image positions, D width, K image codes.
import Foundation

extension FusionModel {
    func sampleCodesByMaskedDecoding(captions: [[Int32]], guidanceScale: Float, options: TokenSamplingOptions,
                                     steps: Int, confidenceTemperature: Float,
                                     generator: inout RandomGenerator) throws -> [[Int32]] {
        guard steps >= 1 else { throw ConfigurationError("MaskGIT sampling needs steps ≥ 1 (got \(steps)); Show-o uses 12 by default") }
        guard confidenceTemperature >= 0 else {
            throw ConfigurationError("confidenceTemperature must be ≥ 0 (got \(confidenceTemperature)); MaskGIT uses 4.5")
        }
        guard !captions.isEmpty else { return [] }
        let start = try startImageSampling(captions: captions, guided: guidanceScale != 0)
        let (n, rows, p) = (captions.count, start.rows, config.imagePositions)
        let (d, k, mask, offset) = (config.model.width, vocabulary.imageCodeRange.count, vocabulary.mask, vocabulary.imageCodeOffset)
        let schedule = config.maskSchedule, shape = config.maskScheduleShape
        // [R·P] RoPE positions of the image in every row.
        let positions = (0..<rows).flatMap { r in (0..<p).map { start.positions[r] + Int32($0) } }
        let axes = generationAxes(starts: start.positions, tokens: 0..<p)
        return withoutGradients {
            // Logits of the K image codes only: a drawn index is a code, its id code + offset.
            var sampler = TokenSampler(options: options, allowed: 0..<Int32(k), vocabularySize: k)
            var ids = [Int32](repeating: mask, count: n * p)  // [n, P]: the conditional rows' image
            var stillMasked = [Int](repeating: p, count: n)
            var candidate = [Int32](repeating: 0, count: p), confidence = [Float](repeating: 0, count: p)
            var order = [Int](repeating: 0, count: p)
            for step in 0..<steps where stillMasked.contains(where: { $0 > 0 }) {
                let inputs = core.embed(rows > n ? ids + ids : ids).reshaped([rows, p, d])
                let hidden = core.hiddenStates(inputs, positions: positions, cache: start.cache,
                                               newTokens: .bidirectional, commit: false, axes: axes)  // [R, P, D]
                let logits = core.logits(hidden.reshaped([rows * p, d]), ids: vocabulary.imageCodeRange)  // [R·P, K]
                let chosen = rows > n ? guidedLogits(conditional: logits.narrow(axis: 0, start: 0, length: n * p),
                                                     unconditional: logits.narrow(axis: 0, start: n * p, length: n * p),
                                                     scale: guidanceScale) : logits  // [n·P, K]
                let noise = confidenceTemperature * (1 - Float(step + 1) / Float(steps))
                withExtendedLifetime(chosen) {
                    for r in 0..<n where stillMasked[r] > 0 {
                        let base = r * p
                        for j in 0..<p {
                            if ids[base + j] == mask {
                                let draw = sampler.sample(logits: chosen.data + (base + j) * k, generator: &generator)
                                candidate[j] = draw.id + offset
                                confidence[j] = draw.logProbability + noise * gumbel(&generator)
                            } else {
                                candidate[j] = ids[base + j]
                                confidence[j] = .infinity
                            }
                        }
                        let remain = schedule.stillMasked(afterStep: step, of: steps, count: p, masked: stillMasked[r], shape: shape)
                        for j in 0..<p { order[j] = j; ids[base + j] = candidate[j] }
                        if remain > 0 {
                            // Least confident first (P log P comparisons per row and step, P = h·w: small next to the forward pass).
                            order.sort { confidence[$0] < confidence[$1] }
                            for k in 0..<remain { ids[base + order[k]] = mask }
                        }
                        stillMasked[r] = remain
                    }
                }
            }
            return (0..<n).map { r in ids[(r * p)..<((r + 1) * p)].map { $0 - offset } }
        }
    }
}

/// A standard Gumbel sample −log(−log u), u ∈ (0, 1).
@inline(__always)
func gumbel(_ generator: inout RandomGenerator) -> Float {
    let u = generator.nextFloat() + 0x1p-25  // (0, 1): both logarithms stay finite
    return -Foundation.log(-Foundation.log(u))
}
