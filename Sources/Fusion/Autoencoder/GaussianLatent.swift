// The KL bottleneck: a diagonal Gaussian posterior q(z|x) = N(μ, σ²) sampled with the
// reparameterisation trick and pulled toward N(0, I) by a KL term (Kingma & Welling 2014, "Auto-Encoding
// Variational Bayes", §2.4 and App. B), as in LDM's KL-regularised autoencoders (Rombach et al. 2022,
// §3 and App. G), whose latents Transfusion diffuses.
//
// Shapes: B batch, c latent channels, h w the latent grid; the encoder hands over [B, 2c, h, w] = (μ, log σ²).
//
//   z  = μ + σ·ε,  ε ~ N(0, I)                                (reparameterisation, §2.4)
//   KL = ½ Σ (μ² + σ² − 1 − log σ²)   summed per image          (App. B)
//   loss term = klWeight · Σ KL / (pixels per image)   (so that it sits beside the per-pixel mean squared error)
//   scale s = 1 / std(μ) over training images; latents handed to the recipes are s·μ, unit variance
//   (LDM §4.3.2 and App. G: "rescale the latent by the component-wise standard deviation").
import Foundation

public final class GaussianLatent: Module {
    /// [1]: s, measured after training by `measureScale` and stored with the weights (1 until then).
    public let latentScale: Tensor
    let config: AutoencoderConfig

    public init(config: AutoencoderConfig) {
        self.config = config
        latentScale = Tensor(repeating: 1, shape: [1])
    }

    var buffers: [(name: String, tensor: Tensor)] { [("latentScale", latentScale)] }
    public var scale: Float { latentScale.data[0] }

    /// Encoder output [B, 2c, h, w] → (μ [B, c, h, w], log σ² [B, c, h, w]).
    func split(_ moments: Tensor) -> (mean: Tensor, logVariance: Tensor) {
        let c = config.latentChannels
        checkShape(moments.rank == 4 && moments.shape[1] == 2 * c,
                   "GaussianLatent: encoder output \(moments.shape), expected [B, \(2 * c), h, w] (mean and log-variance)")
        return (moments.narrow(axis: 1, start: 0, length: c), moments.narrow(axis: 1, start: c, length: c))
    }

    /// Training / evaluation pass: a sample z (the mean when `sample` is false) and the weighted KL term.
    public func callAsFunction(_ moments: Tensor, sample: Bool, generator: inout RandomGenerator) -> QuantizerOutput {
        let (mean, logVariance) = split(moments)
        let variance = logVariance.exp()  // σ²
        var z = mean
        if sample {
            let noise = Tensor.randomNormal(mean.shape, std: 1, generator: &generator)  // ε
            z = mean + (0.5 * logVariance).exp() * noise
        }
        let batch = moments.shape[0]
        // ½ Σ (μ² + σ² − 1 − log σ²), summed per image, averaged over the batch.
        let kl = ((mean.squared() + variance - logVariance - 1).sum() * (0.5 / Float(batch)))
        let pixels = Float(config.imageChannels * config.imageSide * config.imageSide)
        let loss = (config.klWeight / pixels) * kl
        var terms: [(name: String, value: Float)] = [("kl", kl.item)]
        terms.append(("posterior_std", Float(meanValue(variance.sqrt()))))
        return QuantizerOutput(quantized: z, codes: [], loss: loss, terms: terms)
    }

    /// Posterior means × s: the latents the recipes see.
    func scaledMean(_ moments: Tensor) -> Tensor { split(moments).mean * scale }

    private func meanValue(_ t: Tensor) -> Double {
        var total = 0.0
        for i in 0..<t.count { total += Double(t.data[i]) }
        return total / Double(max(t.count, 1))
    }

    /// Sets s = 1 / std(μ) from posterior means [.., c, h, w] of training images (std over all
    /// elements, mean removed, as LDM's `1 / z.flatten().std()`).
    func setScale(fromMeans means: [Tensor]) {
        var count = 0.0, sum = 0.0, sumSquares = 0.0
        for t in means {
            for i in 0..<t.count { let v = Double(t.data[i]); sum += v; sumSquares += v * v }
            count += Double(t.count)
        }
        let mean = sum / max(count, 1)
        let variance = max(sumSquares / max(count, 1) - mean * mean, 1e-12)
        latentScale.data[0] = Float(1 / variance.squareRoot())
    }
}
