// Latent patches ↔ core width, with the timestep embedding (Transfusion, arXiv 2408.11039, §3.2).
// Transfusion cuts a [C, h, w] latent into (h/p)·(w/p) patches of p×p×C values and maps each to a D-wide
// vector, either
//   - by a linear layer (and back by another linear layer), or
//   - by U-Net down blocks (conv, GroupNorm, SiLU, downsampled by p) before the core and up blocks after it,
//     which the paper (§3.2, §4.3) finds lets it use larger patches at little cost in quality;
// and adds an embedding of the diffusion timestep to every patch vector. The timestep embedding is that
// of DDPM (Ho et al. 2020, App. B): sinusoidal features of t, then a two-layer SiLU MLP to D.
//
// Our U-Net is deliberately small: one down block at full resolution (3×3 conv, then a residual
// timestep shift + GroupNorm + SiLU) whose output is average-pooled by p and projected to D, and one up block mirroring
// it (projection from D, nearest upsampling by p, concatenation with the down block's activation — the
// U-Net skip connection —, 3×3 conv, residual timestep shift + GroupNorm + SiLU, 3×3 conv to C). The skip is
// why `embed` returns an `EncodedPatches` that `unembed` consumes, rather than a bare tensor.
//
// Timesteps are Floats in units of training steps (0...T): t for ε-prediction, t·T for the continuous
// flow time t ∈ [0, 1], so both objectives see the same embedding range.
//
// Shape alphabet: I images, C latent channels, h×w latent grid, p patch side, P = (h/p)·(w/p) patches per
// image, D core width, c U-Net channels, F sinusoidal features.
import Foundation

/// What `LatentPatchCodec.embed` produced, kept for `unembed` (the U-Net's skip activation and the
/// timestep embedding its up block is conditioned on).
public struct EncodedPatches {
    /// Patch vectors [I·P, D], image-major, patches row-major within an image; timestep embedding added.
    public let patches: Tensor
    /// Timestep embedding [I, D].
    let time: Tensor
    /// The U-Net down block's activation [I, c, h, w] (nil for the linear encoder).
    let skip: Tensor?
}

public final class LatentPatchCodec: Module {
    public let encoder: RecipeConfig.PatchEncoder
    /// C, h = w, p, D, and c (U-Net channels; 0 for the linear encoder).
    public let channels: Int, grid: Int, patchSize: Int, width: Int, unetChannels: Int

    // Timestep embedding: sinusoidal [I, F] → linear → SiLU → linear → [I, D].
    let timeIn: Tensor  // [D, F]
    let timeInBias: Tensor  // [D]
    let timeOut: Tensor  // [D, D]
    let timeOutBias: Tensor  // [D]
    // Patch features → D and back. Features are p·p·C patch values (linear) or c U-Net channels.
    let patchIn: Tensor  // [D, features]
    let patchInBias: Tensor  // [D]
    let patchOut: Tensor  // [features, D]
    let patchOutBias: Tensor  // [features]
    let unet: UNetBlocks?

    /// The U-Net's convolutions; every conv has a bias, the timestep shift a [c, D] projection.
    struct UNetBlocks {
        let downConv: Tensor  // [c, C, 3, 3]
        let downBias: Tensor  // [c]
        let downTime: Tensor  // [c, D]
        let downNormWeight: Tensor, downNormBias: Tensor  // [c]
        let upConv: Tensor  // [c, 2c, 3, 3] over (upsampled core output ‖ skip)
        let upBias: Tensor  // [c]
        let upTime: Tensor  // [c, D]
        let upNormWeight: Tensor, upNormBias: Tensor  // [c]
        let outConv: Tensor  // [C, c, 3, 3]
        let outBias: Tensor  // [C]
    }

    /// GroupNorm groups in the U-Net blocks (c is a multiple of 8).
    static let unetGroups = 4

    init(config: RecipeConfig, generator: inout RandomGenerator) {
        encoder = config.patchEncoder
        channels = config.latentChannels
        grid = config.imageGrid
        patchSize = config.patchSize
        width = config.model.width
        let d = width, f = Self.timeFeatures(width: d), patchValues = patchSize * patchSize * channels
        // c ≈ D/2, a multiple of 8 between 8 and 64: a small U-Net next to the core, as the paper's.
        unetChannels = encoder == .unet ? min(64, max(8, (d / 2 + 7) / 8 * 8)) : 0
        let c = unetChannels, features = encoder == .unet ? c : patchValues
        // Weights ~ N(0, 1/fan-in), so activations keep unit scale through these few layers (the core's
        // initStd is tuned for its residual stream, not for these); biases and norm shifts start at 0.
        func weight(_ shape: [Int], fanIn: Int) -> Tensor {
            Tensor.randomNormal(shape, std: 1 / Float(fanIn).squareRoot(), generator: &generator, requiresGrad: true)
        }
        func zeros(_ n: Int) -> Tensor { Tensor(zeros: [n], requiresGrad: true) }
        timeIn = weight([d, f], fanIn: f); timeInBias = zeros(d)
        timeOut = weight([d, d], fanIn: d); timeOutBias = zeros(d)
        patchIn = weight([d, features], fanIn: features); patchInBias = zeros(d)
        patchOut = weight([features, d], fanIn: d); patchOutBias = zeros(features)
        if encoder == .unet {
            let cIn = channels
            unet = UNetBlocks(
                downConv: weight([c, cIn, 3, 3], fanIn: cIn * 9), downBias: zeros(c), downTime: weight([c, d], fanIn: d),
                downNormWeight: Tensor(repeating: 1, shape: [c], requiresGrad: true), downNormBias: zeros(c),
                upConv: weight([c, 2 * c, 3, 3], fanIn: 2 * c * 9), upBias: zeros(c), upTime: weight([c, d], fanIn: d),
                upNormWeight: Tensor(repeating: 1, shape: [c], requiresGrad: true), upNormBias: zeros(c),
                outConv: weight([cIn, c, 3, 3], fanIn: c * 9), outBias: zeros(cIn))
        } else {
            unet = nil
        }
    }

    /// P, the patches per image.
    public var patchesPerImage: Int { (grid / patchSize) * (grid / patchSize) }

    // MARK: Timestep embedding

    /// F sinusoidal features: D rounded up to an even number, at least 16.
    static func timeFeatures(width: Int) -> Int { max(16, (width + 1) / 2 * 2) }

    /// Sinusoidal features [I, F] of timesteps (in training steps): cos(t·ωₖ) ‖ sin(t·ωₖ),
    /// ωₖ = 10000^(−k/(F/2)), k < F/2 (Vaswani et al. 2017 §3.5, as DDPM uses them for t).
    static func sinusoidalFeatures(_ timesteps: [Float], count f: Int) -> Tensor {
        let half = f / 2
        var values = [Float](repeating: 0, count: timesteps.count * f)
        for (i, t) in timesteps.enumerated() {
            for k in 0..<half {
                let angle = Double(t) * exp(-log(10_000.0) * Double(k) / Double(half))
                values[i * f + k] = Float(cos(angle))
                values[i * f + half + k] = Float(sin(angle))
            }
        }
        return Tensor(values, shape: [timesteps.count, f])
    }

    /// The timestep embedding [I, D].
    func timeEmbedding(_ timesteps: [Float]) -> Tensor {
        let features = Self.sinusoidalFeatures(timesteps, count: timeIn.shape[1])
        return linear((linear(features, timeIn) + timeInBias).silu(), timeOut) + timeOutBias
    }

    // MARK: Patchify

    /// Latents [I, C, h, w] → patch values [I·P, p·p·C], each row one patch with its values ordered
    /// (row in patch, column in patch, channel). A copy, no parameters.
    public static func patchify(_ latents: Tensor, patchSize p: Int) -> Tensor {
        let (i, c, h, w) = (latents.shape[0], latents.shape[1], latents.shape[2], latents.shape[3])
        return latents.reshaped([i, c, h / p, p, w / p, p])
            .permuted([0, 2, 4, 3, 5, 1])  // [I, h/p, w/p, p, p, C]
            .reshaped([i * (h / p) * (w / p), p * p * c])
    }

    /// The inverse of `patchify`: [I·P, p·p·C] → [I, C, h, w].
    public static func unpatchify(_ patches: Tensor, channels c: Int, grid: Int, patchSize p: Int) -> Tensor {
        let n = grid / p, i = patches.shape[0] / (n * n)
        return patches.reshaped([i, n, n, p, p, c])
            .permuted([0, 5, 1, 3, 2, 4])  // [I, C, h/p, p, w/p, p]
            .reshaped([i, c, grid, grid])
    }

    // MARK: Encode and decode

    /// Latents [I, C, h, w] at per-image timesteps (in training steps, 0...T) → patch vectors [I·P, D]
    /// with the timestep embedding added, plus what `unembed` needs.
    public func embed(_ latents: Tensor, timesteps: [Float]) -> EncodedPatches {
        checkShape(latents.rank == 4 && Array(latents.shape.dropFirst()) == [channels, grid, grid],
                   "LatentPatchCodec: latents \(latents.shape) must be [I, \(channels), \(grid), \(grid)] (latentChannels, imageGrid)")
        let images = latents.shape[0]
        precondition(timesteps.count == images, "LatentPatchCodec: \(timesteps.count) timesteps for \(images) images")
        let time = timeEmbedding(timesteps)  // [I, D]
        let features: Tensor, skip: Tensor?
        if let unet {
            let h = block(conv2d(latents, weight: unet.downConv, bias: unet.downBias, padding: 1), time: time,
                          shift: unet.downTime, normWeight: unet.downNormWeight, normBias: unet.downNormBias)  // [I, c, h, w]
            skip = h
            let pooled = patchSize == 2 ? avgPool2x(h) : h  // [I, c, h/p, w/p]
            features = pooled.permuted([0, 2, 3, 1]).reshaped([images * patchesPerImage, unetChannels])
        } else {
            skip = nil
            features = Self.patchify(latents, patchSize: patchSize)  // [I·P, p·p·C]
        }
        let patches = (linear(features, patchIn) + patchInBias).reshaped([images, patchesPerImage, width])
            + time.reshaped([images, 1, width])  // the timestep embedding on every patch
        return EncodedPatches(patches: patches.reshaped([images * patchesPerImage, width]), time: time, skip: skip)
    }

    /// Core outputs at the image positions [I·P, D] → a prediction in latent space [I, C, h, w]
    /// (ε̂ or the velocity, per the objective), using what `embed` saved for the same images.
    public func unembed(_ hidden: Tensor, _ encoded: EncodedPatches) -> Tensor {
        let images = encoded.time.shape[0], n = grid / patchSize
        checkShape(hidden.rank == 2 && hidden.shape == [images * patchesPerImage, width],
                   "LatentPatchCodec: hidden \(hidden.shape) must be [\(images * patchesPerImage), \(width)] (I·P, D)")
        let features = linear(hidden, patchOut) + patchOutBias  // [I·P, features]
        guard let unet, let skip = encoded.skip else {
            return Self.unpatchify(features, channels: channels, grid: grid, patchSize: patchSize)
        }
        let coarse = features.reshaped([images, n, n, unetChannels]).permuted([0, 3, 1, 2])  // [I, c, h/p, w/p]
        let fine = patchSize == 2 ? upsampleNearest2x(coarse) : coarse  // [I, c, h, w]
        let h = block(conv2d(concatenate([fine, skip], axis: 1), weight: unet.upConv, bias: unet.upBias, padding: 1),
                      time: encoded.time, shift: unet.upTime, normWeight: unet.upNormWeight, normBias: unet.upNormBias)
        return conv2d(h, weight: unet.outConv, bias: unet.outBias, padding: 1)  // [I, C, h, w]
    }

    /// x + SiLU(GroupNorm(x + W·SiLU(time))): a convolution's output x [I, c, h, w] shifted per channel by
    /// the timestep (as in DDPM's residual blocks), normalised and activated, around a residual. The
    /// residual matters: GroupNorm alone removes each image's level and scale, which is exactly what ε
    /// prediction needs to know of x_t (without it a trained U-Net variant sampled latents of ±4 for ±1).
    private func block(_ x: Tensor, time: Tensor, shift: Tensor, normWeight: Tensor, normBias: Tensor) -> Tensor {
        let images = x.shape[0], c = x.shape[1]
        let shifted = x + linear(time.silu(), shift).reshaped([images, c, 1, 1])
        return x + groupNorm(shifted, groups: Self.unetGroups, weight: normWeight, bias: normBias).silu()
    }
}

// MARK: The model's inputs with latent patches

extension FusionModel {
    /// Flat row indices (row·T + column) of every latent image position of `batch`, image by image.
    func imagePositionRows(_ batch: PackedBatch) -> [Int] {
        var rows: [Int] = []
        for image in batch.images where !image.readsPixels {
            rows += (0..<image.count).map { image.row * batch.length + image.start + $0 }
        }
        return rows
    }

    /// Input embeddings [B, T, D] of a packed batch (token embeddings, and at latent image positions the
    /// patch vectors of `latents` at `timesteps`), with the encoded patches that `unembed` will need.
    /// See `inputEmbeddings` for the defaults.
    func latentInputs(_ batch: PackedBatch, latents: [Tensor]? = nil, timesteps: [Float]? = nil)
        -> (inputs: Tensor, encoded: EncodedPatches?) {
        let (b, t, d) = (batch.rows, batch.length, config.model.width)
        let tokens = withPixelTokens(core.embed(batch.ids), batch)  // [B·T, D]
        let latentImages = batch.images.filter { !$0.readsPixels }
        guard let latentPatches, !latentImages.isEmpty else { return (tokens.reshaped([b, t, d]), nil) }
        let imageLatents = latents ?? latentImages.map { image -> Tensor in
            guard case .latents(let l) = image.content else {
                preconditionFailure("FusionModel: recipe '\(config.recipe)' reads latent images, but the batch holds image codes")
            }
            return l
        }
        precondition(imageLatents.count == latentImages.count, "FusionModel: \(imageLatents.count) latents for \(latentImages.count) images")
        let stacked = concatenate(imageLatents.map { $0.reshaped([1] + $0.shape) }, axis: 0)  // [I, C, h, w]
        let encoded = latentPatches.embed(stacked, timesteps: timesteps ?? Array(repeating: 0, count: latentImages.count))
        return (tokens.replacingRows(imagePositionRows(batch), with: encoded.patches).reshaped([b, t, d]), encoded)
    }
}
