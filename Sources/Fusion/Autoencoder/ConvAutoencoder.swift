// The image autoencoder of all three recipes: one convolutional encoder/decoder (the layout of LDM's
// autoencoders, Rombach et al. 2022, App. G, and VQGAN's, Esser et al. 2021, App. A) with an
// exchangeable bottleneck (`vq`, `lfq`, `kl`, AutoencoderConfig.Kind), trained with the same
// architecture and budget for each: the control the Transfusion paper (arXiv 2408.11039, §4.2)
// used to compare Chameleon's VQ-VAE with its VAE.
//
// Shapes: B batch, Cimg image channels (1), S image side (32), h = w = S / f the grid side (8),
//   C_l = channels · channelMultipliers[l] the width of level l, Cz the bottleneck width.
//
//   encoder: x [B, Cimg, S, S] → conv 3×3 → per level: blocks (+ stride-2 conv but the last)
//            → mid block → GN → SiLU → conv 3×3 → [B, Cz, h, w]
//   decoder: [B, Cz', h, w] → conv 3×3 → mid block → per level, deepest first: blocks (+ 2× upsample
//            but the last) → GN → SiLU → conv 3×3 → [B, Cimg, S, S]
import Foundation

/// One resolution level of the encoder or decoder: residual blocks, then an optional resampling.
final class AutoencoderLevel: Module {
    let blocks: [ResidualBlock]
    let downsample: Downsample?
    let upsample: Upsample?

    init(blocks: [ResidualBlock], downsample: Downsample? = nil, upsample: Upsample? = nil) {
        self.blocks = blocks
        self.downsample = downsample
        self.upsample = upsample
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = x
        for block in blocks { h = block(h) }
        if let downsample { h = downsample(h) }
        if let upsample { h = upsample(h) }
        return h
    }
}

/// images [B, Cimg, S, S] → bottleneck input [B, Cz, h, w].
final class ConvEncoder: Module {
    let convIn: Conv2dLayer
    let levels: [AutoencoderLevel]
    let mid: ResidualBlock
    let normOut: GroupNormLayer
    let convOut: Conv2dLayer

    init(config c: AutoencoderConfig, generator g: inout RandomGenerator) {
        let widths = c.channelMultipliers.map { c.channels * $0 }
        convIn = Conv2dLayer(c.imageChannels, widths[0], generator: &g)
        var levels: [AutoencoderLevel] = []
        var width = widths[0]
        for (l, target) in widths.enumerated() {
            var blocks: [ResidualBlock] = []
            for _ in 0..<c.blocksPerLevel {
                blocks.append(ResidualBlock(width, target, groups: c.groups, generator: &g))
                width = target
            }
            let last = l == widths.count - 1
            levels.append(AutoencoderLevel(blocks: blocks, downsample: last ? nil : Downsample(channels: width, generator: &g)))
        }
        self.levels = levels
        mid = ResidualBlock(width, width, groups: c.groups, generator: &g)
        normOut = GroupNormLayer(channels: width, groups: c.groups)
        convOut = Conv2dLayer(width, c.encoderOutputChannels, generator: &g)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convIn(x)
        for level in levels { h = level(h) }
        return convOut(normOut(mid(h)).silu())
    }
}

/// bottleneck output [B, Cz', h, w] → images [B, Cimg, S, S] (unbounded; the API clamps to [0, 1]).
final class ConvDecoder: Module {
    let convIn: Conv2dLayer
    let mid: ResidualBlock
    let levels: [AutoencoderLevel]  // deepest first
    let normOut: GroupNormLayer
    let convOut: Conv2dLayer

    init(config c: AutoencoderConfig, generator g: inout RandomGenerator) {
        let widths = c.channelMultipliers.map { c.channels * $0 }
        var width = widths.last!
        convIn = Conv2dLayer(c.decoderInputChannels, width, generator: &g)
        mid = ResidualBlock(width, width, groups: c.groups, generator: &g)
        var levels: [AutoencoderLevel] = []
        for l in stride(from: widths.count - 1, through: 0, by: -1) {
            var blocks: [ResidualBlock] = []
            for _ in 0..<c.blocksPerLevel {
                blocks.append(ResidualBlock(width, widths[l], groups: c.groups, generator: &g))
                width = widths[l]
            }
            levels.append(AutoencoderLevel(blocks: blocks, upsample: l == 0 ? nil : Upsample(channels: width, generator: &g)))
        }
        self.levels = levels
        normOut = GroupNormLayer(channels: width, groups: c.groups)
        convOut = Conv2dLayer(width, c.imageChannels, generator: &g)
    }

    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = mid(convIn(z))
        for level in levels { h = level(h) }
        return convOut(normOut(h).silu())
    }
}

/// What one training (or evaluation) pass produced.
public struct AutoencoderOutput {
    /// [B, Cimg, S, S], unclamped.
    public var reconstruction: Tensor
    /// Mean squared error against the input (a scalar tensor).
    public var reconstructionLoss: Tensor
    /// reconstructionLoss + the bottleneck's weighted terms: what training minimises.
    public var loss: Tensor
    /// Codes (vq, lfq), N = B·h·w, row-major per image; empty for kl.
    public var codes: [Int32]
    /// Unweighted bottleneck terms for the log.
    public var terms: [(name: String, value: Float)]
}

public final class ConvAutoencoder: Module {
    public let config: AutoencoderConfig
    let encoder: ConvEncoder
    let decoder: ConvDecoder
    let vq: VectorQuantizer?
    let lfq: LookupFreeQuantizer?
    let kl: GaussianLatent?

    public init(config: AutoencoderConfig, generator: inout RandomGenerator) {
        let problems = config.problems
        precondition(problems.isEmpty, "ConvAutoencoder: invalid configuration: " + problems.joined(separator: "; "))
        self.config = config
        encoder = ConvEncoder(config: config, generator: &generator)
        decoder = ConvDecoder(config: config, generator: &generator)
        vq = config.kind == .vq ? VectorQuantizer(config: config, generator: &generator) : nil
        lfq = config.kind == .lfq ? LookupFreeQuantizer(config: config) : nil
        kl = config.kind == .kl ? GaussianLatent(config: config) : nil
    }

    // MARK: Sizes

    /// h = w of the code / latent grid (8 by default).
    public var gridSide: Int { config.gridSide }
    /// K (vq) or 2^b (lfq). A kl model has no codebook: asking is a programming error.
    public var codebookSize: Int {
        switch config.kind {
        case .vq: return config.codebookSize
        case .lfq: return 1 << config.lfqBits
        case .kl: unsupported("codebookSize")
        }
    }
    /// c (kl). A vq or lfq model has no continuous latents: asking is a programming error.
    public var latentChannels: Int {
        guard config.kind == .kl else { unsupported("latentChannels") }
        return config.latentChannels
    }
    /// s: the factor that gives the latents unit variance (kl), measured on the training set.
    public var latentScale: Float {
        guard let kl else { unsupported("latentScale") }
        return kl.scale
    }

    private func unsupported(_ what: String) -> Never {
        preconditionFailure("ConvAutoencoder.\(what): this is a \(config.kind.rawValue) autoencoder, which produces "
            + "\(config.kind.produces); \(what) needs a "
            + (config.kind == .kl ? "vq or lfq" : "kl") + " autoencoder (check `config.kind` first)")
    }

    // MARK: Training pass

    /// Encode, pass the bottleneck, decode; losses for training (`training`: vq codebook updates and
    /// restarts, lfq entropy terms, kl sampling) or for evaluation (posterior mean, no updates).
    public func forward(_ images: Tensor, training: Bool, generator: inout RandomGenerator) -> AutoencoderOutput {
        checkImages(images, "forward")
        let z = encoder(images)  // [B, Cz, h, w]
        let bottleneck: QuantizerOutput
        switch config.kind {
        case .vq: bottleneck = vq!(z, training: training, generator: &generator)
        case .lfq: bottleneck = lfq!(z, training: training)
        case .kl: bottleneck = kl!(z, sample: training, generator: &generator)
        }
        let reconstruction = decoder(bottleneck.quantized)
        let mse = meanSquaredError(reconstruction, images)
        return AutoencoderOutput(reconstruction: reconstruction, reconstructionLoss: mse, loss: mse + bottleneck.loss,
                                 codes: bottleneck.codes, terms: bottleneck.terms)
    }

    private func checkImages(_ images: Tensor, _ caller: String) {
        let c = config
        checkShape(images.rank == 4 && images.shape[1] == c.imageChannels && images.shape[2] == c.imageSide
                   && images.shape[3] == c.imageSide,
                   "ConvAutoencoder.\(caller): images of shape \(images.shape), expected [N, \(c.imageChannels), \(c.imageSide), \(c.imageSide)]")
    }

    /// Runs `body` over the batch in chunks of `chunk` images (bounded memory for large N) without the graph.
    private func inChunks(_ count: Int, chunk: Int = 256, _ body: (Range<Int>) -> Void) {
        withoutGradients {
            var start = 0
            while start < count {
                let end = min(count, start + chunk)
                body(start..<end)
                start = end
            }
        }
    }

    /// Values clamped to [0, 1] (the image range), in place.
    private func clampToImageRange(_ t: Tensor) -> Tensor {
        for i in 0..<t.count { t.data[i] = min(1, max(0, t.data[i])) }
        return t
    }

    // MARK: Codes (vq, lfq)

    /// images [N, Cimg, S, S] in [0, 1] → N rows of h·w codes in 0..<codebookSize, row-major.
    /// Deterministic: the same images give the same codes.
    public func encodeToCodes(_ images: Tensor) -> [[Int32]] {
        guard config.kind != .kl else { unsupported("encodeToCodes") }
        checkImages(images, "encodeToCodes")
        let n = images.shape[0], perImage = config.tokensPerImage
        var result: [[Int32]] = []
        result.reserveCapacity(n)
        var unused = RandomGenerator(seed: 0)
        inChunks(n) { range in
            let z = encoder(images.narrow(axis: 0, start: range.lowerBound, length: range.count))
            let codes: [Int32]
            if let vq { codes = vq(z, training: false, generator: &unused).codes } else { codes = lfq!(z, training: false).codes }
            for i in 0..<range.count { result.append(Array(codes[(i * perImage)..<((i + 1) * perImage)])) }
        }
        return result
    }

    /// N rows of h·w codes → images [N, Cimg, S, S], clamped to [0, 1].
    public func decodeCodes(_ codes: [[Int32]]) -> Tensor {
        guard config.kind != .kl else { unsupported("decodeCodes") }
        let side = gridSide, perImage = config.tokensPerImage, width = config.decoderInputChannels
        for (i, row) in codes.enumerated() where row.count != perImage {
            preconditionFailure("ConvAutoencoder.decodeCodes: image \(i) has \(row.count) codes, expected h·w = \(perImage)")
        }
        let out = Tensor(uninitializedShape: [codes.count, config.imageChannels, config.imageSide, config.imageSide])
        let imageSize = out.count / max(codes.count, 1)
        inChunks(codes.count) { range in
            let flat = Array(codes[range].joined())
            let vectors = vq?.lookup(flat) ?? lfq!.lookup(flat)  // [n·h·w, Cz]
            let z = vectors.reshaped([range.count, side, side, width]).permuted([0, 3, 1, 2])  // [n, Cz, h, w]
            let images = decoder(z)
            (out.data + range.lowerBound * imageSize).update(from: images.data, count: images.count)
        }
        return clampToImageRange(out)
    }

    // MARK: Latents (kl)

    /// images [N, Cimg, S, S] in [0, 1] → latents [N, c, h, w] = s · posterior mean (unit variance on
    /// the training set). Deterministic.
    public func encodeToLatents(_ images: Tensor) -> Tensor {
        guard let kl else { unsupported("encodeToLatents") }
        checkImages(images, "encodeToLatents")
        let n = images.shape[0], c = config.latentChannels, side = gridSide
        let out = Tensor(uninitializedShape: [n, c, side, side])
        let perImage = c * side * side
        inChunks(n) { range in
            let latents = kl.scaledMean(encoder(images.narrow(axis: 0, start: range.lowerBound, length: range.count)))
            (out.data + range.lowerBound * perImage).update(from: latents.data, count: latents.count)
        }
        return out
    }

    /// latents [N, c, h, w] (scaled, as from encodeToLatents) → images [N, Cimg, S, S], clamped to [0, 1].
    public func decodeLatents(_ latents: Tensor) -> Tensor {
        guard let kl else { unsupported("decodeLatents") }
        checkShape(latents.rank == 4 && latents.shape[1] == config.latentChannels && latents.shape[2] == gridSide
                   && latents.shape[3] == gridSide,
                   "ConvAutoencoder.decodeLatents: latents of shape \(latents.shape), expected [N, \(config.latentChannels), \(gridSide), \(gridSide)]")
        let n = latents.shape[0]
        let out = Tensor(uninitializedShape: [n, config.imageChannels, config.imageSide, config.imageSide])
        let imageSize = out.count / max(n, 1)
        inChunks(n) { range in
            let z = latents.narrow(axis: 0, start: range.lowerBound, length: range.count) * (1 / kl.scale)
            let images = decoder(z)
            (out.data + range.lowerBound * imageSize).update(from: images.data, count: images.count)
        }
        return clampToImageRange(out)
    }

    /// Measures and stores s = 1 / std of the posterior means of `images` (kl; LDM §4.3.2). Call once
    /// after training, on training images.
    public func measureLatentScale(on images: Tensor) {
        guard let kl else { unsupported("measureLatentScale") }
        var means: [Tensor] = []
        inChunks(images.shape[0]) { range in
            means.append(kl.split(encoder(images.narrow(axis: 0, start: range.lowerBound, length: range.count))).mean)
        }
        kl.setScale(fromMeans: means)
    }

    /// Reconstructions [N, Cimg, S, S] in [0, 1] through the deterministic path (codes or posterior means).
    public func reconstruct(_ images: Tensor) -> Tensor {
        config.kind == .kl ? decodeLatents(encodeToLatents(images)) : decodeCodes(encodeToCodes(images))
    }

    /// Codes restarted so far in training (vq; 0 otherwise).
    public var restartedCodes: Int { vq?.restartCount ?? 0 }

    // MARK: Weights

    /// Every tensor a weight file holds: the parameters and the buffers that are part of the model
    /// (an EMA codebook, the latent scale), by name.
    public func stateTensors() -> [String: Tensor] {
        var result = parametersByName()
        if let vq { for (name, t) in vq.buffers { result["vq." + name] = t } }
        if let kl { for (name, t) in kl.buffers { result["kl." + name] = t } }
        return result
    }

    static let modelName = "conv-autoencoder"

    /// Writes the weights (no optimiser state) and the configuration as an HDF5 checkpoint.
    public func save(to path: String, overwrite: Bool, metadata extra: [String: String] = [:]) throws {
        var metadata = extra
        metadata["model"] = Self.modelName
        metadata["kind"] = config.kind.rawValue
        metadata["config"] = config.json
        try Checkpoint(step: config.steps, tensors: stateTensors(), metadata: metadata).write(to: path, overwrite: overwrite)
    }

    /// Reads weights written by `save`. With `kind`, a file holding another bottleneck is refused with
    /// an error that says which it holds and what to do.
    public static func load(from path: String, expecting kind: AutoencoderConfig.Kind? = nil) throws -> ConvAutoencoder {
        guard FileManager.default.fileExists(atPath: path) else {
            throw AutoencoderWeightsError(description: "autoencoder weights '\(path)' do not exist; train them with "
                + "`fusion autoencoder train --kind \(kind?.rawValue ?? "vq") --out DIR` or use results/autoencoders/\(kind?.rawValue ?? "vq")/weights.h5")
        }
        let checkpoint = try Checkpoint.read(from: path)
        guard checkpoint.metadata["model"] == modelName, let json = checkpoint.metadata["config"] else {
            throw AutoencoderWeightsError(description: "'\(path)' is a Fusion checkpoint but not autoencoder weights "
                + "(its metadata has model = \(checkpoint.metadata["model"].map { "\"\($0)\"" } ?? "none"), expected \"\(modelName)\"); "
                + "pass a weights.h5 written by `fusion autoencoder train`")
        }
        let config: AutoencoderConfig
        do { config = try JSONDecoder().decode(AutoencoderConfig.self, from: Data(json.utf8)) } catch {
            throw AutoencoderWeightsError(description: "'\(path)': its stored configuration cannot be read (\(error)); "
                + "the file is damaged or from an incompatible version — retrain it")
        }
        if let kind, kind != config.kind {
            throw AutoencoderWeightsError(description: "'\(path)' holds a \(config.kind.rawValue) autoencoder "
                + "(\(config.kind.produces)), but a \(kind.rawValue) autoencoder (\(kind.produces)) was asked for; "
                + "load results/autoencoders/\(kind.rawValue)/weights.h5 or train one with `fusion autoencoder train --kind \(kind.rawValue)`")
        }
        let problems = config.problems
        guard problems.isEmpty else {
            throw AutoencoderWeightsError(description: "'\(path)': its stored configuration is invalid: " + problems.joined(separator: "; "))
        }
        var generator = RandomGenerator(seed: config.seed)
        let model = ConvAutoencoder(config: config, generator: &generator)
        try checkpoint.restore(into: model.stateTensors())
        model.vq?.initializedFromData = true
        return model
    }
}

/// Autoencoder weights that cannot be used; the message says what to do.
public struct AutoencoderWeightsError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public var errorDescription: String? { description }
}
