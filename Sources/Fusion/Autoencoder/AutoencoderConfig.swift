// The one configuration of the image autoencoders: the shared convolutional encoder/decoder, the
// exchangeable bottleneck (`vq`, `lfq`, `kl`) and how it is trained. A bottleneck ablation is a
// one-line difference (`kind`); every other field keeps its documented default.
//
// Decoding is strict in both directions (STYLE.md §6, nanoGPT's configurator): a missing key takes its
// default, an unknown key is an error that lists the valid ones, and a value of the wrong type is an
// error naming the key. The same `init(from:)` serves JSON today and YAML (Yams) later.
import Foundation

public struct AutoencoderConfig: Codable, Equatable, Sendable {
    /// The bottleneck between encoder and decoder.
    public enum Kind: String, Codable, CaseIterable, Sendable {
        /// Vector quantisation against a codebook of `codebookSize` entries (van den Oord et al. 2017).
        case vq
        /// Lookup-free quantisation: the sign of each of `lfqBits` channels (Yu et al. 2023, MAGVIT-v2).
        case lfq
        /// A diagonal Gaussian posterior with `latentChannels` channels and a KL penalty (Kingma & Welling 2014).
        case kl

        /// What each kind produces, for error messages.
        public var produces: String {
            switch self {
            case .vq, .lfq: return "discrete codes (encodeToCodes / decodeCodes)"
            case .kl: return "continuous latents (encodeToLatents / decodeLatents)"
            }
        }
    }

    /// How a `vq` codebook learns.
    public enum CodebookUpdate: String, Codable, CaseIterable, Sendable {
        /// Exponential moving averages of assigned encoder outputs (van den Oord et al. 2017, App. A.1).
        case ema
        /// The codebook loss ‖sg(z) − e‖² through AdamW (van den Oord et al. 2017, §3.2, eq. 3, second term).
        case loss
    }

    // MARK: Model

    public var kind: Kind = .vq
    /// Input images are [B, imageChannels, imageSide, imageSide] with values in [0, 1].
    public var imageSide = 32
    public var imageChannels = 1
    /// Width of the first level; level i has channels · channelMultipliers[i]. Small (16, 32, 64) so
    /// that each bottleneck trains in minutes on a shared 2-core CPU: at 32 × [1, 2, 2] a step costs
    /// about 2.5× more, nearly all of it in the 32×32 level.
    public var channels = 16
    /// One resolution level per entry, halved between levels: the downsample factor is 2^(count − 1)
    /// ([1, 2, 4]: 32×32 → 8×8, as LDM's f = 4 autoencoders).
    public var channelMultipliers = [1, 2, 4]
    /// Residual blocks per level, in the encoder and in the decoder.
    public var blocksPerLevel = 1
    /// GroupNorm groups (must divide every level's width); Wu & He 2018 use 32 at wider layers.
    public var groups = 8

    // vq
    /// K: codebook entries.
    public var codebookSize = 512
    /// D: width of a code vector (and of the encoder's output for vq).
    public var codeDimension = 32
    /// β of the commitment loss ‖z − sg(e)‖² (van den Oord et al. 2017, §3.2, eq. 3; 0.25 there). Also
    /// weighs lfq's commitment term.
    public var commitmentWeight: Float = 0.25
    public var codebookUpdate: CodebookUpdate = .ema
    /// γ of the EMA codebook update (0.99 in van den Oord et al. 2017, App. A.1).
    public var emaDecay: Float = 0.99
    /// A code whose moving-average use per batch falls below this is dead and is restarted from a
    /// random encoder output of the current batch (Dhariwal et al. 2020, Jukebox, §3.3: threshold 1).
    public var deadCodeThreshold: Float = 1
    /// Training steps between dead-code checks (0: never restart).
    public var restartInterval = 10

    // lfq
    /// b: bits per position; the implicit codebook has 2^b entries.
    public var lfqBits = 9
    /// Weight of the entropy loss E[H(q(z))] − γ·H(E[q(z)]) (MAGVIT-v2 §3.1, eq. 5; 0.1 in common implementations).
    public var entropyWeight: Float = 0.1
    /// γ: weight of the batch-entropy (codebook usage) term inside the entropy loss.
    public var batchEntropyWeight: Float = 1
    /// τ of the soft assignment q(c | z) ∝ exp(−‖z − c‖² / τ) that the entropy terms use.
    public var entropyTemperature: Float = 0.01

    // kl
    /// c: latent channels.
    public var latentChannels = 4
    /// Weight of Σ KL against Σ squared error per image (both summed, LDM's convention; Rombach et al.
    /// 2022 use 1e-6 beside L1 + LPIPS, which are larger than a squared error in [0, 1]).
    public var klWeight: Float = 1e-3
    /// Training images whose posterior means measure the latent scale factor (LDM §4.3.2, App. G).
    public var scaleSampleCount = 5_000

    // MARK: Training

    public var steps = 800
    public var batchSize = 32
    public var learningRate: Float = 2e-3
    /// Linear warm-up steps (capped at `steps`).
    public var warmupSteps = 50
    public var weightDecay: Float = 0
    public var gradientClip: Float = 1
    public var seed: UInt64 = 0
    /// Steps between train/ log rows.
    public var logEvery = 50

    public init(kind: Kind = .vq) { self.kind = kind }

    // MARK: Derived

    /// Halvings between image and grid.
    public var downsampleFactor: Int { 1 << (channelMultipliers.count - 1) }
    /// h = w of the code / latent grid (8 by default).
    public var gridSide: Int { imageSide / downsampleFactor }
    /// Channels the encoder hands to the bottleneck: D (vq), b (lfq), 2c (kl: mean and log-variance).
    public var encoderOutputChannels: Int {
        switch kind {
        case .vq: return codeDimension
        case .lfq: return lfqBits
        case .kl: return 2 * latentChannels
        }
    }
    /// Channels the decoder starts from.
    public var decoderInputChannels: Int {
        switch kind {
        case .vq: return codeDimension
        case .lfq: return lfqBits
        case .kl: return latentChannels
        }
    }
    /// Tokens (code or latent positions) per image: h·w.
    public var tokensPerImage: Int { gridSide * gridSide }

    /// Every problem with the values, each saying which key to change; empty when usable.
    public var problems: [String] {
        var found: [String] = []
        if channelMultipliers.isEmpty || channelMultipliers.contains(where: { $0 < 1 }) {
            found.append("channelMultipliers must be a non-empty list of positive integers, got \(channelMultipliers)")
        }
        if imageSide < 1 || imageChannels < 1 || channels < 1 || blocksPerLevel < 0 || groups < 1 {
            found.append("imageSide, imageChannels, channels and groups must be ≥ 1 and blocksPerLevel ≥ 0")
        }
        if !channelMultipliers.isEmpty && imageSide % downsampleFactor != 0 {
            found.append("imageSide \(imageSide) is not divisible by the downsample factor \(downsampleFactor) "
                         + "(2^(channelMultipliers.count − 1))")
        }
        for m in channelMultipliers where groups >= 1 && (channels * m) % groups != 0 {
            found.append("groups \(groups) does not divide the level width \(channels * m) (channels × \(m))")
        }
        switch kind {
        case .vq:
            if codebookSize < 2 || codeDimension < 1 { found.append("vq needs codebookSize ≥ 2 and codeDimension ≥ 1") }
            if !(0..<1).contains(emaDecay) { found.append("emaDecay must lie in [0, 1), got \(emaDecay)") }
        case .lfq:
            if !(1...16).contains(lfqBits) { found.append("lfqBits must lie in 1…16 (2^b codes), got \(lfqBits)") }
            if entropyTemperature <= 0 { found.append("entropyTemperature must be > 0") }
        case .kl:
            if latentChannels < 1 { found.append("latentChannels must be ≥ 1") }
            if klWeight < 0 { found.append("klWeight must be ≥ 0") }
        }
        if steps < 1 { found.append("steps must be ≥ 1, got \(steps)") }
        if batchSize < 1 { found.append("batchSize must be ≥ 1, got \(batchSize)") }
        if warmupSteps < 0 { found.append("warmupSteps must be ≥ 0, got \(warmupSteps)") }
        if logEvery < 1 { found.append("logEvery must be ≥ 1, got \(logEvery)") }
        if !(learningRate > 0) || gradientClip <= 0 || weightDecay < 0 {
            found.append("need learningRate > 0, gradientClip > 0 and weightDecay ≥ 0")
        }
        return found
    }

    // MARK: Strict decoding

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, imageSide, imageChannels, channels, channelMultipliers, blocksPerLevel, groups
        case codebookSize, codeDimension, commitmentWeight, codebookUpdate, emaDecay, deadCodeThreshold, restartInterval
        case lfqBits, entropyWeight, batchEntropyWeight, entropyTemperature
        case latentChannels, klWeight, scaleSampleCount
        case steps, batchSize, learningRate, warmupSteps, weightDecay, gradientClip, seed, logEvery
    }

    /// The keys a configuration file may set.
    public static var validKeys: [String] { CodingKeys.allCases.map(\.rawValue) }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: Decoder) throws {
        let present = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        let unknown = present.filter { CodingKeys(rawValue: $0) == nil }
        if !unknown.isEmpty {
            throw AutoencoderConfigError(description: "unknown autoencoder configuration key\(unknown.count == 1 ? "" : "s") "
                + unknown.sorted().map { "'\($0)'" }.joined(separator: ", ")
                + "; valid keys are: " + Self.validKeys.joined(separator: ", "))
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let decoded = try c.decodeIfPresent(T.self, forKey: key) { value = decoded }
        }
        try read(.kind, &kind); try read(.imageSide, &imageSide); try read(.imageChannels, &imageChannels)
        try read(.channels, &channels); try read(.channelMultipliers, &channelMultipliers)
        try read(.blocksPerLevel, &blocksPerLevel); try read(.groups, &groups)
        try read(.codebookSize, &codebookSize); try read(.codeDimension, &codeDimension)
        try read(.commitmentWeight, &commitmentWeight); try read(.codebookUpdate, &codebookUpdate)
        try read(.emaDecay, &emaDecay); try read(.deadCodeThreshold, &deadCodeThreshold)
        try read(.restartInterval, &restartInterval)
        try read(.lfqBits, &lfqBits); try read(.entropyWeight, &entropyWeight)
        try read(.batchEntropyWeight, &batchEntropyWeight); try read(.entropyTemperature, &entropyTemperature)
        try read(.latentChannels, &latentChannels); try read(.klWeight, &klWeight)
        try read(.scaleSampleCount, &scaleSampleCount)
        try read(.steps, &steps); try read(.batchSize, &batchSize); try read(.learningRate, &learningRate)
        try read(.warmupSteps, &warmupSteps); try read(.weightDecay, &weightDecay)
        try read(.gradientClip, &gradientClip); try read(.seed, &seed); try read(.logEvery, &logEvery)
    }

    /// Reads a JSON configuration (any subset of `validKeys`); the error names the file and the key.
    public static func load(json path: String) throws -> AutoencoderConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AutoencoderConfigError(description: "cannot read the configuration file '\(path)'")
        }
        do {
            return try JSONDecoder().decode(AutoencoderConfig.self, from: data)
        } catch let error as AutoencoderConfigError {
            throw AutoencoderConfigError(description: "\(path): \(error.description)")
        } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw AutoencoderConfigError(description: "\(path): '\(key)' should be a \(type) (\(context.debugDescription))")
        } catch let DecodingError.dataCorrupted(context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw AutoencoderConfigError(description: "\(path): \(key.isEmpty ? "" : "'\(key)': ")\(context.debugDescription)"
                + (key == "kind" ? " (valid kinds: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))" : ""))
        }
    }

    /// The resolved configuration as JSON text with sorted keys (stored in logs and weight files).
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
    }
}

/// A configuration that cannot be used; the message names the key to change.
public struct AutoencoderConfigError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(description: String) { self.description = description }
    public var errorDescription: String? { description }
}
