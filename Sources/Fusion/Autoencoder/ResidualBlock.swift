// The layers of the convolutional autoencoders, as in the encoder/decoder of LDM's autoencoders
// (Rombach et al. 2022, App. G; Esser et al. 2021, VQGAN, Fig. 2 / App. A): 3×3 convolutions,
// GroupNorm + SiLU pre-activation residual blocks (He et al. 2016, "Identity Mappings", §4.1), a
// stride-2 convolution to downsample and nearest-neighbour 2× + a 3×3 convolution to upsample.
//
// Shapes: B batch, C / Cin / Cout channels, H W height and width.

/// A 2-D convolution with a bias: weight [Cout, Cin, k, k], bias [Cout].
public final class Conv2dLayer: Module {
    public let weight: Tensor  // [Cout, Cin, k, k]
    public let bias: Tensor  // [Cout]
    public let stride: Int, padding: Int

    /// LeCun-normal initialisation (std = 1/√fan-in): with GroupNorm after most convolutions the scale
    /// only matters for the first steps, and this keeps residual sums from growing with depth.
    public init(_ cin: Int, _ cout: Int, kernel: Int = 3, stride: Int = 1, padding: Int? = nil,
                generator: inout RandomGenerator) {
        weight = Tensor.randomNormal([cout, cin, kernel, kernel], std: 1 / Float(cin * kernel * kernel).squareRoot(),
                                     generator: &generator, requiresGrad: true)
        bias = Tensor(zeros: [cout], requiresGrad: true)
        self.stride = stride
        self.padding = padding ?? kernel / 2
    }

    /// x [B, Cin, H, W] → [B, Cout, H', W'].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}

/// GroupNorm with a per-channel affine (γ = 1, β = 0 at start).
public final class GroupNormLayer: Module {
    public let weight: Tensor  // [C]
    public let bias: Tensor  // [C]
    public let groups: Int

    public init(channels: Int, groups: Int) {
        weight = Tensor(repeating: 1, shape: [channels], requiresGrad: true)
        bias = Tensor(zeros: [channels], requiresGrad: true)
        self.groups = groups
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { groupNorm(x, groups: groups, weight: weight, bias: bias) }
}

/// y = skip(x) + conv₂(SiLU(GN₂(conv₁(SiLU(GN₁(x)))))), skip a 1×1 convolution when the width changes.
public final class ResidualBlock: Module {
    let norm1: GroupNormLayer
    let conv1: Conv2dLayer  // Cin → Cout
    let norm2: GroupNormLayer
    let conv2: Conv2dLayer  // Cout → Cout
    let skip: Conv2dLayer?  // 1×1, Cin → Cout, only when Cin ≠ Cout

    public init(_ cin: Int, _ cout: Int, groups: Int, generator: inout RandomGenerator) {
        norm1 = GroupNormLayer(channels: cin, groups: groups)
        conv1 = Conv2dLayer(cin, cout, generator: &generator)
        norm2 = GroupNormLayer(channels: cout, groups: groups)
        conv2 = Conv2dLayer(cout, cout, generator: &generator)
        skip = cin == cout ? nil : Conv2dLayer(cin, cout, kernel: 1, generator: &generator)
    }

    /// x [B, Cin, H, W] → [B, Cout, H, W].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = conv2(norm2(conv1(norm1(x).silu())).silu())
        return (skip.map { $0(x) } ?? x) + h
    }
}

/// Halves H and W with a 3×3 stride-2 convolution (learned, unlike pooling; VQGAN's Downsample).
public final class Downsample: Module {
    let conv: Conv2dLayer

    public init(channels: Int, generator: inout RandomGenerator) {
        conv = Conv2dLayer(channels, channels, kernel: 3, stride: 2, padding: 1, generator: &generator)
    }

    /// x [B, C, H, W] → [B, C, H/2, W/2].
    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

/// Doubles H and W: nearest-neighbour copy, then a 3×3 convolution (no checkerboard artefacts of a
/// strided transposed convolution; Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").
public final class Upsample: Module {
    let conv: Conv2dLayer

    public init(channels: Int, generator: inout RandomGenerator) {
        conv = Conv2dLayer(channels, channels, generator: &generator)
    }

    /// x [B, C, H, W] → [B, C, 2H, 2W].
    public func callAsFunction(_ x: Tensor) -> Tensor { conv(upsampleNearest2x(x)) }
}
