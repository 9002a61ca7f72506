// Flamingo's gated cross-attention block (Alayrac et al. 2022, §2.2, Fig. 4, "GATED XATTN-DENSE"),
// inserted before every k-th block of the core when images enter through cross-attention:
//     x ← x + tanh(α_attn) · CrossAttention(norm(x), image features)
//     x ← x + tanh(α_mlp)  · FFW(norm(x))
// Both gates start at α = 0, so the model starts as the pure language model it was and learns how much
// of the image to let in (x + 0·y is x exactly: the text logits are unchanged bit for bit at the start).
// The norms are RMSNorm, as the core's.
//
// Shape alphabet: B sequences, T positions, K image features per sequence, D width.

/// The image features a sequence's positions may cross-attend to, and which position sees which.
public struct CrossAttentionContext {
    /// Features [B, K, D] of the images of each sequence, side by side (a sequence with fewer is padded).
    public let features: Tensor
    /// Per sequence, T·K flags (query-major): may position t see feature k.
    public let allowed: CrossAttentionMask

    public init(features: Tensor, allowed: CrossAttentionMask) {
        self.features = features
        self.allowed = allowed
    }

    /// The same features for `count` new positions per sequence that see every feature of their own
    /// sequence's images (a caption being decoded after its image); `keys[b]` features are real in sequence b.
    public func forNewPositions(_ count: Int, keys: [Int]) -> CrossAttentionContext {
        let k = features.shape[1]
        return CrossAttentionContext(features: features, allowed: keys.map { n in
            (0..<(count * k)).map { $0 % k < n }
        })
    }
}

public final class GatedCrossAttention: Module {
    let attentionNorm: Tensor  // [D]
    let attention: CrossAttentionLayer
    let attentionGate: Tensor  // [1], α_attn
    let mlpNorm: Tensor  // [D]
    let mlp: FeedForward
    let mlpGate: Tensor  // [1], α_mlp

    init(width d: Int, heads: Int, generator: inout RandomGenerator) {
        let std = 1 / Float(d).squareRoot()
        attentionNorm = Tensor(repeating: 1, shape: [d], requiresGrad: true)
        attention = CrossAttentionLayer(width: d, heads: heads, outputStd: std, generator: &generator)
        attentionGate = Tensor(zeros: [1], requiresGrad: true)
        mlpNorm = Tensor(repeating: 1, shape: [d], requiresGrad: true)
        mlp = FeedForward(input: d, hidden: 4 * d, output: d, generator: &generator)
        mlpGate = Tensor(zeros: [1], requiresGrad: true)
    }

    /// x [B, T, D] → [B, T, D].
    func callAsFunction(_ x: Tensor, context: CrossAttentionContext) -> Tensor {
        let attended = x + attentionGate.tanh() * attention(rmsNorm(x, weight: attentionNorm), over: context.features, allowed: context.allowed)
        return attended + mlpGate.tanh() * mlp(rmsNorm(attended, weight: mlpNorm))
    }
}
