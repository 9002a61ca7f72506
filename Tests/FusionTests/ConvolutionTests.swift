// Tests of conv2d, convTranspose2d, upsampleNearest2x and avgPool2x (Convolution.swift): forward values
// against direct Float64 loops written from the textbook definitions, the adjoint identity between the
// convolution and its transpose, and gradient checks of every input.
//
// Shapes: B batch, Cin / Cout channels, H W input size, Ho Wo output size, kH kW kernel size.
//
// Forward tolerance: each output is a bias plus K = Cin·kH·kW products summed in Float32 (sgemm, then the
// scatter-add of col2im), whose rounding error is at most K·u·Σ|terms| with u = 6e-8 (Higham, Accuracy
// and Stability of Numerical Algorithms, §3.1). K ≤ 54 here, so 1e-5·(Σ|terms| + 1) bounds it with room;
// an off-by-one index or a flipped kernel moves outputs by O(1), five orders of magnitude more.
import XCTest
@testable import Fusion

/// A direct convolution: out[b, co, oh, ow] = bias[co] + Σ x[b, ci, oh·s − p + ki, ow·s − p + kj]·w[co, ci, ki, kj].
/// Returns the values and, per output, Σ|terms| (for the tolerance).
private func naiveConv2d(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride s: Int, padding p: Int)
    -> (shape: [Int], values: [Double], magnitude: [Double]) {
    let (batch, cin, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (cout, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
    let outH = (height + 2 * p - kh) / s + 1, outW = (width + 2 * p - kw) / s + 1
    var values: [Double] = [], magnitude: [Double] = []
    for b in 0..<batch {
        for co in 0..<cout {
            for oh in 0..<outH {
                for ow in 0..<outW {
                    var total = Double(bias?[co] ?? 0), size = abs(total)
                    for ci in 0..<cin {
                        for ki in 0..<kh {
                            for kj in 0..<kw {
                                let ih = oh * s - p + ki, iw = ow * s - p + kj
                                guard ih >= 0, ih < height, iw >= 0, iw < width else { continue }
                                let term = Double(x[b, ci, ih, iw]) * Double(w[co, ci, ki, kj])
                                total += term
                                size += abs(term)
                            }
                        }
                    }
                    values.append(total)
                    magnitude.append(size)
                }
            }
        }
    }
    return ([batch, cout, outH, outW], values, magnitude)
}

/// A direct transposed convolution, as a scatter: every input pixel x[b, ci, ih, iw] adds
/// x·w[ci, co, ki, kj] to out[b, co, ih·s − p + ki, iw·s − p + kj] (dropped where that is outside).
private func naiveConvTranspose2d(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride s: Int, padding p: Int)
    -> (shape: [Int], values: [Double], magnitude: [Double]) {
    let (batch, cin, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (cout, kh, kw) = (w.shape[1], w.shape[2], w.shape[3])
    let outH = (height - 1) * s - 2 * p + kh, outW = (width - 1) * s - 2 * p + kw
    let shape = [batch, cout, outH, outW]
    var values = [Double](repeating: 0, count: shape.reduce(1, *)), magnitude = values
    func index(_ b: Int, _ c: Int, _ h: Int, _ w: Int) -> Int { ((b * cout + c) * outH + h) * outW + w }
    for b in 0..<batch {
        for co in 0..<cout {
            for h in 0..<outH {
                for wi in 0..<outW {
                    values[index(b, co, h, wi)] = Double(bias?[co] ?? 0)
                    magnitude[index(b, co, h, wi)] = abs(Double(bias?[co] ?? 0))
                }
            }
        }
        for ci in 0..<cin {
            for ih in 0..<height {
                for iw in 0..<width {
                    for co in 0..<cout {
                        for ki in 0..<kh {
                            for kj in 0..<kw {
                                let oh = ih * s - p + ki, ow = iw * s - p + kj
                                guard oh >= 0, oh < outH, ow >= 0, ow < outW else { continue }
                                let term = Double(x[b, ci, ih, iw]) * Double(w[ci, co, ki, kj])
                                values[index(b, co, oh, ow)] += term
                                magnitude[index(b, co, oh, ow)] += abs(term)
                            }
                        }
                    }
                }
            }
        }
    }
    return (shape, values, magnitude)
}

/// Asserts |actual − expected| ≤ 1e-5·(magnitude + 1) everywhere; on failure prints the first differing
/// values and the max difference.
private func assertMatchesReference(_ actual: Tensor, _ reference: (shape: [Int], values: [Double], magnitude: [Double]),
                                    _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, reference.shape, "\(label): shape", file: file, line: line)
    guard actual.shape == reference.shape else { return }
    var maxDifference = 0.0, failures: [String] = []
    for i in 0..<actual.count {
        let difference = abs(Double(actual.data[i]) - reference.values[i])
        maxDifference = max(maxDifference, difference)
        if difference > 1e-5 * (reference.magnitude[i] + 1), failures.count < 6 {
            failures.append("element \(i): got \(actual.data[i]), expected \(reference.values[i])")
        }
    }
    XCTAssert(failures.isEmpty, "\(label): max |difference| \(maxDifference)\n" + failures.joined(separator: "\n"),
              file: file, line: line)
}

private func dot(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.count == b.count)
    var total = 0.0
    for i in 0..<a.count { total += Double(a.data[i]) * Double(b.data[i]) }
    return total
}

/// Runs `body` with column buffers of at most `floats` floats (forcing several chunks per batch).
private func withColumnChunks(ofAtMost floats: Int, _ body: () -> Void) {
    let saved = ConvolutionChunking.maximumColumnFloats
    ConvolutionChunking.maximumColumnFloats = floats
    defer { ConvolutionChunking.maximumColumnFloats = saved }
    body()
}

final class ConvolutionTests: XCTestCase {
    /// (kernel, stride, padding, bias) cases: pointwise (the no-unfolding path), padded, strided, a
    /// non-square kernel, and a kernel of even size with stride 2 (the autoencoder's downsampling).
    private let cases: [(kh: Int, kw: Int, stride: Int, padding: Int, bias: Bool)] = [
        (3, 3, 1, 0, true), (3, 3, 1, 1, false), (3, 3, 2, 1, true), (3, 3, 2, 0, false),
        (1, 1, 1, 0, true), (3, 2, 1, 1, true), (4, 4, 2, 1, false), (1, 1, 2, 0, false),
    ]

    func testConv2dMatchesDirectLoops() {
        for (n, c) in cases.enumerated() {
            let x = testTensor([3, 2, 6, 7], seed: 1 + UInt64(n), requiresGrad: false)  // [B, Cin, H, W]
            let w = testTensor([5, 2, c.kh, c.kw], seed: 20 + UInt64(n), requiresGrad: false)  // [Cout, Cin, kH, kW]
            let b = c.bias ? testTensor([5], seed: 40 + UInt64(n), requiresGrad: false) : nil
            let reference = naiveConv2d(x, w, b, stride: c.stride, padding: c.padding)
            let label = "conv2d \(c)"
            assertMatchesReference(conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding), reference, label)
            withColumnChunks(ofAtMost: 1) {  // one image per chunk
                assertMatchesReference(conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding),
                                       reference, label + ", one image per chunk")
            }
        }
    }

    func testConvTranspose2dMatchesDirectLoops() {
        for (n, c) in cases.enumerated() {
            let x = testTensor([3, 4, 5, 6], seed: 60 + UInt64(n), requiresGrad: false)  // [B, Cin, H, W]
            let w = testTensor([4, 3, c.kh, c.kw], seed: 80 + UInt64(n), requiresGrad: false)  // [Cin, Cout, kH, kW]
            let b = c.bias ? testTensor([3], seed: 100 + UInt64(n), requiresGrad: false) : nil
            let reference = naiveConvTranspose2d(x, w, b, stride: c.stride, padding: c.padding)
            let label = "convTranspose2d \(c)"
            assertMatchesReference(convTranspose2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding),
                                   reference, label)
            withColumnChunks(ofAtMost: 1) {
                assertMatchesReference(convTranspose2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding),
                                       reference, label + ", one image per chunk")
            }
        }
    }

    /// ⟨conv(x), y⟩ = ⟨x, convT(y)⟩ for the same weight, where the sizes round-trip exactly
    /// ((H + 2p − k) divisible by the stride). Tolerance: both sides sum ~10³ Float32 products of size ≤ 1,
    /// relative error ≤ 1e-5 of Σ|terms| (≤ 10³); 1e-4·(1 + |⟨·,·⟩|) + 2e-3 covers it.
    func testConvTransposeIsTheAdjointOfConv() {
        let geometries: [(k: Int, stride: Int, padding: Int, h: Int, w: Int)] = [
            (3, 1, 1, 5, 6), (3, 2, 1, 7, 5), (4, 2, 1, 6, 8), (1, 1, 0, 4, 3), (2, 2, 0, 4, 6),
        ]
        for (n, g) in geometries.enumerated() {
            let x = testTensor([2, 3, g.h, g.w], seed: 200 + UInt64(n), requiresGrad: false)  // [B, Cin, H, W]
            let w = testTensor([4, 3, g.k, g.k], seed: 220 + UInt64(n), requiresGrad: false)  // [Cout, Cin, k, k]
            let cx = conv2d(x, weight: w, bias: nil, stride: g.stride, padding: g.padding)  // [B, Cout, Ho, Wo]
            let y = testTensor(cx.shape, seed: 240 + UInt64(n), requiresGrad: false)
            let ty = convTranspose2d(y, weight: w, bias: nil, stride: g.stride, padding: g.padding)  // [B, Cin, H, W]
            XCTAssertEqual(ty.shape, x.shape, "convTranspose2d must invert conv2d's shape for \(g)")
            guard ty.shape == x.shape else { continue }
            let left = dot(cx, y), right = dot(x, ty)
            XCTAssertEqual(left, right, accuracy: 1e-4 * (1 + abs(left)) + 2e-3, "⟨conv(x), y⟩ vs ⟨x, convT(y)⟩ for \(g)")
        }
    }

    func testConv2dGradients() {
        for (n, c) in cases.enumerated() {
            let x = testTensor([2, 2, 4, 5], seed: 300 + UInt64(n))  // [B, Cin, H, W], Cin ≠ Cout, H ≠ W
            let w = testTensor([3, 2, c.kh, c.kw], seed: 320 + UInt64(n))  // [Cout, Cin, kH, kW]
            let inputs = c.bias ? [x, w, testTensor([3], seed: 340 + UInt64(n))] : [x, w]
            assertGradientsMatch(inputs) { xs in
                conv2d(xs[0], weight: xs[1], bias: xs.count > 2 ? xs[2] : nil, stride: c.stride, padding: c.padding)
            }
            withColumnChunks(ofAtMost: 1) {
                assertGradientsMatch(inputs) { xs in
                    conv2d(xs[0], weight: xs[1], bias: xs.count > 2 ? xs[2] : nil, stride: c.stride, padding: c.padding)
                }
            }
        }
    }

    /// The first layer of an encoder: the image needs no gradient, the weight and bias do (and the
    /// reverse, a frozen layer with a trainable input).
    func testConv2dGradientsOfSomeInputs() {
        let x = testTensor([2, 1, 5, 5], seed: 400, requiresGrad: false)
        let w = testTensor([3, 1, 3, 3], seed: 401), b = testTensor([3], seed: 402)
        assertGradientsMatch([x, w, b]) { xs in conv2d(xs[0], weight: xs[1], bias: xs[2], stride: 2, padding: 1) }
        XCTAssertNil(x.grad)
        let x2 = testTensor([2, 2, 4, 4], seed: 403)
        let frozen = testTensor([3, 2, 3, 3], seed: 404, requiresGrad: false)
        assertGradientsMatch([x2, frozen]) { xs in conv2d(xs[0], weight: xs[1], bias: nil, padding: 1) }
        XCTAssertNil(frozen.grad)
    }

    func testConvTranspose2dGradients() {
        for (n, c) in cases.enumerated() {
            let x = testTensor([2, 3, 3, 4], seed: 500 + UInt64(n))  // [B, Cin, H, W]
            let w = testTensor([3, 2, c.kh, c.kw], seed: 520 + UInt64(n))  // [Cin, Cout, kH, kW]
            let inputs = c.bias ? [x, w, testTensor([2], seed: 540 + UInt64(n))] : [x, w]
            assertGradientsMatch(inputs) { xs in
                convTranspose2d(xs[0], weight: xs[1], bias: xs.count > 2 ? xs[2] : nil, stride: c.stride, padding: c.padding)
            }
            withColumnChunks(ofAtMost: 1) {
                assertGradientsMatch(inputs) { xs in
                    convTranspose2d(xs[0], weight: xs[1], bias: xs.count > 2 ? xs[2] : nil,
                                    stride: c.stride, padding: c.padding)
                }
            }
        }
    }

    func testUpsampleNearest2x() {
        let x = Tensor([1, 2, 3, 4, 5, 6], shape: [1, 1, 2, 3])
        let y = upsampleNearest2x(x)
        XCTAssertEqual(y.shape, [1, 1, 4, 6])
        XCTAssertEqual(y.array, [1, 1, 2, 2, 3, 3,
                                 1, 1, 2, 2, 3, 3,
                                 4, 4, 5, 5, 6, 6,
                                 4, 4, 5, 5, 6, 6])
        assertGradientsMatch([testTensor([2, 3, 3, 2], seed: 600)]) { xs in upsampleNearest2x(xs[0]) }
    }

    func testAvgPool2x() {
        let x = Tensor([1, 2, 3, 4,
                        5, 6, 7, 8,
                        9, 10, 11, 12,
                        13, 14, 15, 16], shape: [1, 1, 4, 4])
        let y = avgPool2x(x)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.array, [3.5, 5.5, 11.5, 13.5])
        assertGradientsMatch([testTensor([2, 3, 4, 6], seed: 700)]) { xs in avgPool2x(xs[0]) }
    }

    /// Average pooling is the adjoint of nearest upsampling divided by four: ⟨pool(x), y⟩ = ¼⟨x, up(y)⟩.
    func testAvgPoolIsAQuarterOfTheUpsamplingAdjoint() {
        let x = testTensor([2, 3, 4, 6], seed: 800, requiresGrad: false)
        let y = testTensor([2, 3, 2, 3], seed: 801, requiresGrad: false)
        XCTAssertEqual(dot(avgPool2x(x), y), 0.25 * dot(x, upsampleNearest2x(y)), accuracy: 1e-5)
    }

    /// FLOPs: the forward sgemm counts 2·Cout·K·N per image, the bias fill nothing (sgemm adds it).
    func testConv2dCountsItsFlops() {
        let x = testTensor([2, 3, 8, 8], seed: 900, requiresGrad: false)
        let w = testTensor([4, 3, 3, 3], seed: 901, requiresGrad: false), b = testTensor([4], seed: 902, requiresGrad: false)
        let flops = FlopCounter.measure { _ = conv2d(x, weight: w, bias: b, stride: 1, padding: 1) }
        XCTAssertEqual(flops, Int64(2 * 2 * 4 * (3 * 9) * 64))
    }
}
