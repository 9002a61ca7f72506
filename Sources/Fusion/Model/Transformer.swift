// The core: one decoder-only transformer shared by all three recipes (DESIGN.md, "The three recipes
// on one core"). Llama-style (Touvron et al. 2023, §2.2): RMSNorm, RoPE, SwiGLU, no biases; with
// Chameleon's switches (arXiv 2405.09818, §2.3): QK-norm and norm re-ordering.
//
// Shape alphabet: B batch, T sequence, D width, H heads, Dh = D/H, F SwiGLU hidden, V vocabulary.
// A recipe turns its sequence into input embeddings [B, T, D] (token rows, or image patch rows for
// Transfusion), calls `hiddenStates`, and reads logits or patch predictions from the result.
import Foundation

public final class TransformerBlock: Module {
    let config: TransformerConfig
    let attentionNorm: Tensor  // [D]
    let wq: Tensor, wk: Tensor, wv: Tensor  // [D, D]
    let wo: Tensor  // [D, D], scaled init
    let queryNorm: Tensor?, keyNorm: Tensor?  // [Dh], with QK-norm
    let mlpNorm: Tensor  // [D]
    let wGate: Tensor, wUp: Tensor  // [F, D]
    let wDown: Tensor  // [D, F], scaled init

    init(config: TransformerConfig, generator: inout RandomGenerator) {
        self.config = config
        let d = config.width, f = config.resolvedMLPHidden, dh = config.headWidth
        let std = config.initStd, residualStd = config.initStd / Float(2 * config.layers).squareRoot()
        func weight(_ shape: [Int], _ std: Float) -> Tensor {
            Tensor.randomNormal(shape, std: std, generator: &generator, requiresGrad: true)
        }
        attentionNorm = Tensor(repeating: 1, shape: [d], requiresGrad: true)
        wq = weight([d, d], std); wk = weight([d, d], std); wv = weight([d, d], std)
        wo = weight([d, d], residualStd)
        queryNorm = config.qkNorm ? Tensor(repeating: 1, shape: [dh], requiresGrad: true) : nil
        keyNorm = config.qkNorm ? Tensor(repeating: 1, shape: [dh], requiresGrad: true) : nil
        mlpNorm = Tensor(repeating: 1, shape: [d], requiresGrad: true)
        wGate = weight([f, d], std); wUp = weight([f, d], std)
        wDown = weight([d, f], residualStd)
    }

    /// Pre-norm: x + f(norm(x)).  Re-ordered (Chameleon): x + norm(f(x)).
    private func residual(_ x: Tensor, norm: Tensor, _ f: (Tensor) -> Tensor) -> Tensor {
        switch config.normPlacement {
        case .pre: return x + f(rmsNorm(x, weight: norm))
        case .reordered: return x + rmsNorm(f(x), weight: norm)
        }
    }

    /// Queries, keys and values of x [B, T, D], packed [B, T, 3, H, Dh], with QK-norm and RoPE applied:
    /// one stacked sgemm for the three projections, one pass for the norms and rotations.
    private func projections(_ x: Tensor, angles: RotaryAngles) -> Tensor {
        let (b, t) = (x.shape[0], x.shape[1]), (h, dh) = (config.heads, config.headWidth)
        let qkv = linear(x, stacked: [wq, wk, wv]).reshaped([b, t, 3, h, dh])
        return rotaryQKV(qkv, queryNorm: queryNorm, keyNorm: keyNorm, angles: angles)
    }

    /// wDown · (silu(wGate·x) ∘ wUp·x), the gate and up projections as one stacked sgemm; the SwiGLU output
    /// is recomputed in the backward pass rather than kept (`swigluProjection`).
    private func mlp(_ x: Tensor) -> Tensor { swigluProjection(gateAndUp: linear(x, stacked: [wGate, wUp]), wDown) }

    /// x [B, T, D] → [B, T, D] under one mask per sequence.
    func callAsFunction(_ x: Tensor, angles: RotaryAngles, masks: [AttentionMask]) -> Tensor {
        let h = residual(x, norm: attentionNorm) { input in
            linear(attention(packed: projections(input, angles: angles), masks: masks).reshaped(input.shape), wo)
        }
        return residual(h, norm: mlpNorm, mlp)
    }

    /// The same block for new positions against a key/value cache (inference only).
    func callAsFunction(_ x: Tensor, angles: RotaryAngles, cache: KVCache, layer: Int,
                        newTokens: KVCache.NewTokenAttention, valid: [[Bool]]?) -> Tensor {
        let h = residual(x, norm: attentionNorm) { input in
            let qkv = projections(input, angles: angles)
            let part = { (i: Int) in qkv.narrow(axis: 2, start: i, length: 1).reshaped([qkv.shape[0], qkv.shape[1], qkv.shape[3], qkv.shape[4]]) }
            let out = cache.attend(layer: layer, query: part(0), key: part(1), value: part(2), newTokens: newTokens, valid: valid)
            return linear(out.reshaped(input.shape), wo)
        }
        return residual(h, norm: mlpNorm, mlp)
    }
}

/// M-RoPE's three position axes of a call's tokens (`RotaryAngles`), each as long as its positions;
/// text tokens carry their position on all three.
public struct PositionAxes {
    public var temporal: [Int32], height: [Int32], width: [Int32]
    public init(temporal: [Int32], height: [Int32], width: [Int32]) {
        self.temporal = temporal
        self.height = height
        self.width = width
    }

    /// Text everywhere: each axis the 1-D positions.
    public init(positions: [Int32]) { self.init(temporal: positions, height: positions, width: positions) }

    /// Marks `count` tokens from flat index `first` as positions `offset`, `offset` + 1, … of an image of
    /// side `side` (row-major) whose first position is the 1-D position `start`: t = start,
    /// h = start + row, w = start + column.
    public mutating func markImage(first: Int, count: Int, side: Int, start: Int32, offset: Int = 0) {
        for j in 0..<count {
            let cell = offset + j
            temporal[first + j] = start
            height[first + j] = start + Int32(cell / side)
            width[first + j] = start + Int32(cell % side)
        }
    }
}

public final class Transformer: Module {
    public let config: TransformerConfig
    /// [V, D]: input embedding of every id (text, special, image code).
    public let tokenEmbedding: Tensor
    public let blocks: [TransformerBlock]
    let finalNorm: Tensor  // [D]
    /// [V, D]: logits = hidden · outputHeadᵀ (untied from the input embedding, as Llama).
    public let outputHead: Tensor
    /// Flamingo's gated cross-attention layers (`GatedCrossAttention`), one before every
    /// `crossAttentionEvery`-th block (blocks 0, k, 2k, …); empty when images do not enter that way.
    public let crossAttention: [GatedCrossAttention]
    public let crossAttentionEvery: Int
    /// Forward passes run so far (full or cached `hiddenStates` calls): what the sampling benchmark
    /// reports per generated image. Not a parameter, not saved.
    public internal(set) var forwardPasses = 0

    /// `crossAttentionEvery` k > 0 adds the gated cross-attention layers, drawn after every other
    /// parameter so that the core's own start the same with them and without.
    public init(config: TransformerConfig, crossAttentionEvery: Int = 0, generator: inout RandomGenerator) {
        precondition((try? config.validate()) != nil, "Transformer: invalid configuration \(config); call validate() first")
        self.config = config
        tokenEmbedding = Tensor.randomNormal([config.vocabularySize, config.width], std: config.initStd,
                                             generator: &generator, requiresGrad: true)
        var blocks: [TransformerBlock] = []
        for _ in 0..<config.layers { blocks.append(TransformerBlock(config: config, generator: &generator)) }
        self.blocks = blocks
        finalNorm = Tensor(repeating: 1, shape: [config.width], requiresGrad: true)
        outputHead = Tensor.randomNormal([config.vocabularySize, config.width], std: config.initStd,
                                         generator: &generator, requiresGrad: true)
        self.crossAttentionEvery = crossAttentionEvery
        crossAttention = crossAttentionEvery > 0
            ? stride(from: 0, to: config.layers, by: crossAttentionEvery).map { _ in
                GatedCrossAttention(width: config.width, heads: config.heads, generator: &generator)
            }
            : []
    }

    /// The gated cross-attention layer that runs before block `index`, if any.
    func crossAttentionLayer(before index: Int) -> GatedCrossAttention? {
        crossAttentionEvery > 0 && index % crossAttentionEvery == 0 ? crossAttention[index / crossAttentionEvery] : nil
    }

    /// The rotation angles of a call's tokens: by `positions`, or with `image_rope: 2d` and `axes` by M-RoPE.
    func rotaryAngles(positions: [Int32], axes: PositionAxes?) -> RotaryAngles {
        if config.imageRope == .twoD, let axes {
            precondition(axes.temporal.count == positions.count, "Transformer: \(axes.temporal.count) axes for \(positions.count) positions")
            return RotaryAngles(temporal: axes.temporal, height: axes.height, width: axes.width, base: config.ropeBase, headWidth: config.headWidth)
        }
        return RotaryAngles(positions: positions, base: config.ropeBase, headWidth: config.headWidth)
    }

    /// Embeddings [N, D] of N ids.
    public func embed(_ ids: [Int32]) -> Tensor { embedding(tokenEmbedding, ids: ids) }

    /// Final-normalised hidden states [B, T, D] of inputs [B, T, D]; `positions` are B·T RoPE positions
    /// (restarting in each packed document), `masks` one per sequence; `context`: the image features the
    /// cross-attention layers read (nil: they are skipped, as for a batch without such images).
    public func hiddenStates(_ inputs: Tensor, positions: [Int32], masks: [AttentionMask],
                             context: CrossAttentionContext? = nil, axes: PositionAxes? = nil) -> Tensor {
        checkShape(inputs.rank == 3 && inputs.shape[2] == config.width,
                   "Transformer: inputs \(inputs.shape) must be [B, T, \(config.width)]")
        checkShape(inputs.shape[1] <= config.contextLength,
                   "Transformer: sequence of \(inputs.shape[1]) positions is longer than the context (\(config.contextLength))")
        forwardPasses += 1
        var x = inputs
        let angles = rotaryAngles(positions: positions, axes: axes)
        for (index, block) in blocks.enumerated() {
            if let context, let layer = crossAttentionLayer(before: index) { x = layer(x, context: context) }
            x = block(x, angles: angles, masks: masks)
        }
        return rmsNorm(x, weight: finalNorm)
    }

    /// Logits [..., V] of hidden states [..., D].
    public func logits(_ hidden: Tensor) -> Tensor { linear(hidden, outputHead) }

    /// Logits [..., C] of only the ids in `ids`, a contiguous range of the vocabulary: rows of the output
    /// head read in place, the same products as those columns of `logits`. The image samplers, which may
    /// draw only image codes, skip the other V − C columns (at Show-o's smallest sizes the head is most of
    /// a MaskGIT step's work). Inference only: records no graph.
    public func logits(_ hidden: Tensor, ids: Range<Int32>) -> Tensor {
        let d = config.width
        checkShape(hidden.shape.last == d && ids.lowerBound >= 0 && Int(ids.upperBound) <= config.vocabularySize,
                   "logits(ids: \(ids)): hidden \(hidden.shape) against a head of \(config.vocabularySize) ids × \(d)")
        let (n, c) = (hidden.count / d, ids.count)
        let out = Tensor(uninitializedShape: Array(hidden.shape.dropLast()) + [c])
        withExtendedLifetime((hidden, outputHead)) {
            BLAS.sgemm(transA: false, transB: true, m: n, n: c, k: d, a: hidden.data, lda: d,
                       b: outputHead.data + Int(ids.lowerBound) * d, ldb: d, c: out.data, ldc: c)
        }
        return out
    }

    /// Hidden states [B, Tn, D] of Tn new positions per sequence, attending to everything in `cache`
    /// and to each other (`newTokens`: causally, or fully as inside an image); their keys and values
    /// are written into the cache, and kept there only when `commit` (a diffusion or MaskGIT step
    /// re-runs the same image positions many times over one cached prefix). `valid` [B][Tn] marks
    /// padding (false) that no one may attend to; `context` as above, its flags for the new positions.
    /// Inference only: records no graph.
    public func hiddenStates(_ inputs: Tensor, positions: [Int32], cache: KVCache,
                             newTokens: KVCache.NewTokenAttention = .causal, valid: [[Bool]]? = nil,
                             commit: Bool = true, context: CrossAttentionContext? = nil, axes: PositionAxes? = nil) -> Tensor {
        withoutGradients {
            let tn = inputs.shape[1]
            precondition(cache.length + tn <= cache.capacity,
                         "Transformer: \(cache.length) cached + \(tn) new positions exceed the cache (\(cache.capacity))")
            forwardPasses += 1
            var x = inputs
            let angles = rotaryAngles(positions: positions, axes: axes)
            for (layer, block) in blocks.enumerated() {
                if let context, let crossLayer = crossAttentionLayer(before: layer) { x = crossLayer(x, context: context) }
                x = block(x, angles: angles, cache: cache, layer: layer, newTokens: newTokens, valid: valid)
            }
            cache.finish(newCount: tn, valid: valid, commit: commit)
            return rmsNorm(x, weight: finalNorm)
        }
    }
}
