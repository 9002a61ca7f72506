// The core's configuration: a Llama-style decoder (Touvron et al. 2023, §2.2: pre-RMSNorm, SwiGLU,
// RoPE, no biases) with the switches the three recipes need (Chameleon, arXiv 2405.09818, §2.3:
// QK-norm and norm re-ordering). One value of this type describes the network; the recipes add
// their own switches in `RecipeConfig`.

public struct TransformerConfig: Codable, Equatable, Sendable {
    /// Where each block normalises. `.pre`: x + f(norm(x)) (Llama). `.reordered`: x + norm(f(x)),
    /// the Swin-style re-ordering Chameleon uses to keep the residual stream's norm bounded (§2.3).
    public enum NormPlacement: String, ConfigurationChoice, Sendable { case pre, reordered }
    /// How image positions are rotated: `1d`, by their place in the sequence as text is; `2d`, by their
    /// row and column in the image's grid (M-RoPE, Qwen2-VL §2.1; `RotaryAngles`).
    public enum ImageRoPE: String, ConfigurationChoice, Sendable {
        case oneD = "1d", twoD = "2d"
    }

    /// Model width D.
    public var width = 128
    /// Number of transformer blocks L.
    public var layers = 4
    /// Attention heads H (D must be a multiple of H; Dh = D/H must be even for RoPE).
    public var heads = 4
    /// SwiGLU hidden width F; 0 gives ≈ 8/3·D rounded up to a multiple of 32 (Llama §2.2).
    public var mlpHidden = 0
    /// Vocabulary size V: text ids, special ids and, for the discrete recipes, image codes.
    public var vocabularySize = 1_536
    /// Longest sequence T the model is trained and sampled at.
    public var contextLength = 256
    /// RMSNorm on each head's queries and keys before RoPE (Chameleon §2.3, Dehghani et al. 2023).
    public var qkNorm = true
    public var normPlacement = NormPlacement.pre
    /// RoPE base θ.
    public var ropeBase: Float = 10_000
    public var imageRope = ImageRoPE.oneD
    /// Standard deviation of the initial weights; the residual output projections (wo, wDown) are
    /// scaled by 1/√(2L) on top (GPT-2, Radford et al. 2019, §2.3), so the residual stream's variance
    /// does not grow with depth.
    public var initStd: Float = 0.02

    public init() {}

    /// YAML keys in snake_case, as researchers write them (`model.context_length=512`).
    enum CodingKeys: String, CodingKey {
        case width, layers, heads
        case mlpHidden = "mlp_hidden", vocabularySize = "vocabulary_size", contextLength = "context_length"
        case qkNorm = "qk_norm", normPlacement = "norm_placement", ropeBase = "rope_base", initStd = "init_std"
        case imageRope = "image_rope"
    }

    public var headWidth: Int { width / heads }
    public var resolvedMLPHidden: Int { mlpHidden > 0 ? mlpHidden : ((8 * width / 3 + 31) / 32) * 32 }

    /// Parameters outside the embedding table and the output head (the N of the 6·N·D estimate).
    public var nonEmbeddingParameterCount: Int {
        let d = width, f = resolvedMLPHidden
        let block = 4 * d * d + 3 * d * f + 2 * d + (qkNorm ? 2 * headWidth : 0)
        return layers * block + d  // + the final norm
    }

    /// Checks the shape rules; the message names the field and what would fix it.
    public func validate() throws {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError(message) }
        guard width > 0, layers > 0, heads > 0 else { throw fail("model.width, model.layers and model.heads must be positive (got \(width), \(layers), \(heads))") }
        guard width % heads == 0 else { throw fail("model.width \(width) is not a multiple of model.heads \(heads)") }
        guard headWidth % 2 == 0 else { throw fail("model.width / model.heads = \(headWidth) must be even for RoPE") }
        guard mlpHidden >= 0 else { throw fail("model.mlp_hidden must be ≥ 0 (0: ≈ 8/3·width), got \(mlpHidden)") }
        guard vocabularySize > 0, contextLength > 0 else { throw fail("model.vocabulary_size and model.context_length must be positive") }
        guard initStd > 0, ropeBase > 1 else { throw fail("model.init_std must be > 0 and model.rope_base > 1") }
    }
}

/// A configuration that cannot be built; the message names the key and says what is allowed.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
