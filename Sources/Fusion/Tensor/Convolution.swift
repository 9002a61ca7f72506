// 2-D convolution and its transpose, nearest-neighbour 2× upsampling and 2×2 average pooling, in NCHW
// layout: the building blocks of the convolutional autoencoders (VQ / LFQ / KL) and of Transfusion's
// U-Net down/up patch blocks (arXiv 2408.11039, §3.2).
//
// Shapes: B batch, C / Cin / Cout channels, H W image height and width, Ho Wo output height and width,
//   kH kW kernel size, K = Cin·kH·kW (the length of one unfolded column), N = Ho·Wo (columns per image).
//
// conv2d is im2col + sgemm (Chellapilla, Puri & Simard 2006, "High performance convolutional neural
// networks for document processing", §3): each image is unfolded into columns [K, N], so that
//   forward:   y_b [Cout, N] = W [Cout, K] · cols_b [K, N]  (+ bias[Cout] broadcast over N)
//   backward:  dW [Cout, K] += dy_b · cols_bᵀ,   dcols_b [K, N] = Wᵀ · dy_b,   dx_b += col2im(dcols_b),
//              dbias[c] += Σ_{b,n} dy[b, c, n]
// convTranspose2d (PyTorch's ConvTranspose2d with output_padding 0) is the adjoint of conv2d for the
// same weight: its forward is conv2d's dx (Wᵀ · x_b, then col2im) and its dx is conv2d's forward.
//
// Every matrix product goes through BLAS.sgemm with transpose flags and strides, one per image (an
// NCHW output is not one matrix across the batch, so a single product would need a transposing copy).
// A 1×1 kernel with stride 1 and no padding needs no unfolding at all: the image is its own columns.
import Foundation

// MARK: - Geometry, im2col, col2im

/// How an image [C, H, W] and its columns [C·kH·kW, Ho·Wo] correspond. The image side is conv2d's
/// input and convTranspose2d's output; the column side is conv2d's output and convTranspose2d's input.
struct ConvGeometry {
    let height: Int, width: Int  // H, W: the image side
    let kernelH: Int, kernelW: Int
    let stride: Int, padding: Int
    let outH: Int, outW: Int  // Ho, Wo: the column side, Ho = (H + 2·padding − kH) / stride + 1

    var imageArea: Int { height * width }
    var kernelArea: Int { kernelH * kernelW }
    var columnCount: Int { outH * outW }  // N
    /// 1×1, stride 1, no padding: the columns [C, N] are the image [C, H·W] itself.
    var isPointwise: Bool { kernelH == 1 && kernelW == 1 && stride == 1 && padding == 0 }

    /// The output columns ow whose input column ow·stride − padding + kj lies inside the image.
    @inline(__always)
    func validColumns(kernelColumn kj: Int) -> Range<Int> {
        let first = padding - kj  // ow·stride ≥ first
        let last = width - 1 + padding - kj  // ow·stride ≤ last
        let lower = first <= 0 ? 0 : (first + stride - 1) / stride
        let upper = last < 0 ? 0 : min(outW, last / stride + 1)
        return lower..<max(lower, upper)
    }
}

/// Images per column buffer: enough that both cores get whole planes to unfold when images are small,
/// few enough that the buffer stays about a megafloat (4 MiB, within the last-level cache) instead of
/// growing with the batch. Internal and mutable so that tests can force chunks of one image.
enum ConvolutionChunking {
    nonisolated(unsafe) static var maximumColumnFloats = 1 << 20
}

/// Calls `body(images, scratch)` over the batch in chunks, with `scratch` a column buffer
/// [images.count, K, N] when `needsScratch` (nil otherwise: then the whole batch is one chunk).
private func forEachChunk(batch: Int, columnFloatsPerImage: Int, needsScratch: Bool,
                          _ body: (_ images: Range<Int>, _ scratch: UnsafeMutablePointer<Float>?) -> Void) {
    let perChunk = needsScratch
        ? max(1, min(batch, ConvolutionChunking.maximumColumnFloats / max(1, columnFloatsPerImage))) : max(batch, 1)
    let scratch = needsScratch ? Tensor(uninitializedShape: [perChunk, columnFloatsPerImage]) : nil  // [images, K, N]
    var first = 0
    while first < batch {
        let count = min(perChunk, batch - first)
        body(first..<(first + count), scratch?.data)
        first += count
    }
    withExtendedLifetime(scratch) {}
}

/// Unfolds image planes [planes, H, W] into rows [planes · kH·kW, N]: row (p, ki, kj), column (oh, ow)
/// holds image[p, oh·stride − padding + ki, ow·stride − padding + kj], or 0 in the padding.
/// Planes are independent, so they are split over the cores (a plane is one channel of one image).
func im2col(_ image: UnsafePointer<Float>, planes: Int, _ g: ConvGeometry,
            into columns: UnsafeMutablePointer<Float>) {
    let area = g.imageArea, n = g.columnCount, kArea = g.kernelArea
    let s = g.stride, pad = g.padding, outW = g.outW, width = g.width
    Parallel.forRows(planes, width: kArea * n) { range in
        for p in range {
            let plane = image + p * area  // [H, W]
            for ki in 0..<g.kernelH {
                for kj in 0..<g.kernelW {
                    let row = columns + (p * kArea + ki * g.kernelW + kj) * n  // [Ho, Wo]
                    let valid = g.validColumns(kernelColumn: kj)
                    for oh in 0..<g.outH {
                        let dst = row + oh * outW
                        let ih = oh * s - pad + ki
                        guard ih >= 0 && ih < g.height, !valid.isEmpty else {
                            dst.update(repeating: 0, count: outW)
                            continue
                        }
                        let src = plane + ih * width - pad + kj  // src[ow·s] = image[ih, ow·s − pad + kj]
                        if valid.lowerBound > 0 { dst.update(repeating: 0, count: valid.lowerBound) }
                        if s == 1 {
                            (dst + valid.lowerBound).update(from: src + valid.lowerBound, count: valid.count)
                        } else {
                            for ow in valid { dst[ow] = src[ow * s] }
                        }
                        if valid.upperBound < outW {
                            (dst + valid.upperBound).update(repeating: 0, count: outW - valid.upperBound)
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of im2col: adds rows [planes · kH·kW, N] back onto image planes [planes, H, W]
/// (scatter-add; an image pixel covered by several kernel positions receives each). Each plane only
/// receives from its own rows, so splitting planes over the cores never has two threads write one pixel.
func col2im(_ columns: UnsafePointer<Float>, planes: Int, _ g: ConvGeometry,
            addingInto image: UnsafeMutablePointer<Float>) {
    let area = g.imageArea, n = g.columnCount, kArea = g.kernelArea
    let s = g.stride, pad = g.padding, outW = g.outW, width = g.width
    Parallel.forRows(planes, width: kArea * n) { range in
        for p in range {
            let plane = image + p * area  // [H, W]
            for ki in 0..<g.kernelH {
                for kj in 0..<g.kernelW {
                    let row = columns + (p * kArea + ki * g.kernelW + kj) * n  // [Ho, Wo]
                    let valid = g.validColumns(kernelColumn: kj)
                    if valid.isEmpty { continue }
                    for oh in 0..<g.outH {
                        let ih = oh * s - pad + ki
                        if ih < 0 || ih >= g.height { continue }
                        let src = row + oh * outW
                        let dst = plane + ih * width - pad + kj  // dst[ow·s] = image[ih, ow·s − pad + kj]
                        if s == 1 {
                            for ow in valid { dst[ow] += src[ow] }
                        } else {
                            for ow in valid { dst[ow * s] += src[ow] }
                        }
                    }
                }
            }
        }
    }
    FlopCounter.add(planes * kArea * n)  // one add per column entry (an upper bound: padding adds none)
}

// MARK: - Per-channel helpers (bias)

/// out[b, c, :] = values[c] (or 0 without values) for every image: what convTranspose2d adds onto.
private func fillChannels(_ out: UnsafeMutablePointer<Float>, batch: Int, channels: Int, area: Int,
                          values: UnsafePointer<Float>?) {
    Parallel.forRows(batch * channels, width: area) { range in
        for plane in range {
            (out + plane * area).update(repeating: values?[plane % channels] ?? 0, count: area)
        }
    }
}

/// gradient[c] += Σ_{b, i} dy[b, c, i] for dy [B, C, area]: the bias gradient. Split over channels,
/// so each thread owns its entries; four partial sums keep the adds from waiting on each other.
private func sumPerChannel(_ dy: UnsafePointer<Float>, batch: Int, channels: Int, area: Int,
                           addingInto gradient: UnsafeMutablePointer<Float>) {
    Parallel.forRows(channels, width: batch * area) { range in
        for c in range {
            var total: Float = 0
            for b in 0..<batch {
                let p = dy + (b * channels + c) * area
                var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
                var i = 0
                while i + 4 <= area {
                    s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]
                    i += 4
                }
                while i < area { s0 += p[i]; i += 1 }
                total += (s0 + s1) + (s2 + s3)
            }
            gradient[c] += total
        }
    }
    FlopCounter.add(batch * channels * area)
}

// MARK: - conv2d

/// 2-D convolution (cross-correlation, as in PyTorch's Conv2d): x [B, Cin, H, W], weight
/// [Cout, Cin, kH, kW], bias [Cout] → [B, Cout, Ho, Wo] with Ho = (H + 2·padding − kH) / stride + 1.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
    let weightName = weight.name.map { " \($0)" } ?? ""
    checkShape(x.rank == 4, "conv2d: input must be [B, C, H, W], got shape \(x.shape)")
    checkShape(weight.rank == 4, "conv2d: weight\(weightName) must be [Cout, Cin, kH, kW], got shape \(weight.shape)")
    precondition(stride >= 1 && padding >= 0, "conv2d: stride \(stride) must be ≥ 1 and padding \(padding) ≥ 0")
    let batch = x.shape[0], cin = x.shape[1], height = x.shape[2], width = x.shape[3]
    let cout = weight.shape[0], kernelH = weight.shape[2], kernelW = weight.shape[3]
    checkShape(weight.shape[1] == cin,
               "conv2d: input has \(cin) channels but weight\(weightName) of shape \(weight.shape) expects \(weight.shape[1])")
    if let bias {
        checkShape(bias.shape == [cout],
                   "conv2d: bias\(bias.name.map { " \($0)" } ?? "") has shape \(bias.shape), expected [\(cout)] (one per output channel)")
    }
    checkShape(height + 2 * padding >= kernelH && width + 2 * padding >= kernelW,
               "conv2d: kernel \(kernelH)×\(kernelW) is larger than the padded input \(height + 2 * padding)×\(width + 2 * padding) "
               + "(input \(x.shape), padding \(padding)); pad more or use a smaller kernel")
    let g = ConvGeometry(height: height, width: width, kernelH: kernelH, kernelW: kernelW, stride: stride, padding: padding,
                         outH: (height + 2 * padding - kernelH) / stride + 1,
                         outW: (width + 2 * padding - kernelW) / stride + 1)
    let k = cin * g.kernelArea, n = g.columnCount, area = g.imageArea

    let out = Tensor(uninitializedShape: [batch, cout, g.outH, g.outW])  // [B, Cout, Ho, Wo]
    let xs = x.data  // [B, Cin, H, W]
    let w = weight.data  // [Cout, K]
    forEachChunk(batch: batch, columnFloatsPerImage: k * n, needsScratch: !g.isPointwise) { images, scratch in
        let xChunk = xs + images.lowerBound * cin * area  // [images, Cin, H, W]
        var columns = xChunk  // [images, K, N]
        if let scratch {
            im2col(xChunk, planes: images.count * cin, g, into: scratch)
            columns = scratch
        }
        for image in images {
            let y = out.data + image * cout * n  // [Cout, N]
            // The bias is written just before the product that adds onto it, while y is still in cache.
            if let bias { for c in 0..<cout { (y + c * n).update(repeating: bias.data[c], count: n) } }
            // y_b [Cout, N] = W [Cout, K] · cols_b [K, N] (+ bias)
            BLAS.sgemm(transA: false, transB: false, m: cout, n: n, k: k, a: w, lda: k,
                       b: columns + (image - images.lowerBound) * k * n, ldb: n,
                       beta: bias == nil ? 0 : 1, c: y, ldc: n)
        }
    }

    return out.recordGraph(inputs: [x, weight] + (bias.map { [$0] } ?? [])) { _, grad in
        let gy = grad.data  // [B, Cout, N]
        if let bias, bias.requiresGrad {
            sumPerChannel(gy, batch: batch, channels: cout, area: n, addingInto: bias.gradientBuffer())
        }
        let gw = weight.requiresGrad ? weight.gradientBuffer() : nil  // [Cout, K]
        let gx = x.requiresGrad ? x.gradientBuffer() : nil  // [B, Cin, H, W]
        if gw == nil && gx == nil { return }
        // The columns are unfolded again rather than kept from the forward pass: kept, they would hold
        // kH·kW copies of every input for the whole batch per layer until backward; unfolding is a
        // copy, about 1/(2·Cout) of the work of the sgemm that reads it.
        forEachChunk(batch: batch, columnFloatsPerImage: k * n, needsScratch: !g.isPointwise) { images, scratch in
            let xChunk = xs + images.lowerBound * cin * area  // [images, Cin, H, W]
            let gyChunk = gy + images.lowerBound * cout * n  // [images, Cout, N]
            if let gw {
                var columns = xChunk  // [images, K, N]
                if let scratch {
                    im2col(xChunk, planes: images.count * cin, g, into: scratch)
                    columns = scratch
                }
                // dW [Cout, K] += dy_b [Cout, N] · cols_bᵀ [N, K], summed over the images
                BLAS.sgemmBatched(count: images.count, transA: false, transB: true, m: cout, n: k, k: n,
                                  a: gyChunk, lda: n, strideA: cout * n, b: columns, ldb: n, strideB: k * n,
                                  beta: 1, c: gw, ldc: k, strideC: 0)
            }
            if let gx {
                let gxChunk = gx + images.lowerBound * cin * area  // [images, Cin, H, W]
                // dcols_b [K, N] = Wᵀ [K, Cout] · dy_b [Cout, N]; pointwise, dcols_b is dx_b and sgemm adds into it
                BLAS.sgemmBatched(count: images.count, transA: true, transB: false, m: k, n: n, k: cout,
                                  a: w, lda: k, strideA: 0, b: gyChunk, ldb: n, strideB: cout * n,
                                  beta: scratch == nil ? 1 : 0, c: scratch ?? gxChunk, ldc: n, strideC: k * n)
                if let scratch { col2im(scratch, planes: images.count * cin, g, addingInto: gxChunk) }
            }
        }
    }
}

// MARK: - convTranspose2d

/// Transposed 2-D convolution (PyTorch's ConvTranspose2d, output_padding 0), the adjoint of conv2d with
/// the same weight: x [B, Cin, H, W], weight [Cin, Cout, kH, kW], bias [Cout] → [B, Cout, Ho, Wo] with
/// Ho = (H − 1)·stride − 2·padding + kH. Each input pixel scatters kernel·value onto a stride-spaced grid.
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
    let weightName = weight.name.map { " \($0)" } ?? ""
    checkShape(x.rank == 4, "convTranspose2d: input must be [B, C, H, W], got shape \(x.shape)")
    checkShape(weight.rank == 4,
               "convTranspose2d: weight\(weightName) must be [Cin, Cout, kH, kW], got shape \(weight.shape)")
    precondition(stride >= 1 && padding >= 0, "convTranspose2d: stride \(stride) must be ≥ 1 and padding \(padding) ≥ 0")
    let batch = x.shape[0], cin = x.shape[1], height = x.shape[2], width = x.shape[3]
    let cout = weight.shape[1], kernelH = weight.shape[2], kernelW = weight.shape[3]
    checkShape(weight.shape[0] == cin,
               "convTranspose2d: input has \(cin) channels but weight\(weightName) of shape \(weight.shape) expects \(weight.shape[0]) "
               + "(a transposed convolution's weight is [Cin, Cout, kH, kW])")
    if let bias {
        checkShape(bias.shape == [cout],
                   "convTranspose2d: bias\(bias.name.map { " \($0)" } ?? "") has shape \(bias.shape), expected [\(cout)] (one per output channel)")
    }
    let outH = (height - 1) * stride - 2 * padding + kernelH, outW = (width - 1) * stride - 2 * padding + kernelW
    checkShape(height >= 1 && width >= 1 && outH >= 1 && outW >= 1,
               "convTranspose2d: input \(x.shape) with kernel \(kernelH)×\(kernelW), stride \(stride), padding \(padding) "
               + "gives an empty \(outH)×\(outW) output; use less padding")
    // Image side = this op's output, column side = its input (the roles conv2d gives them reversed).
    let g = ConvGeometry(height: outH, width: outW, kernelH: kernelH, kernelW: kernelW, stride: stride, padding: padding,
                         outH: height, outW: width)
    let k = cout * g.kernelArea, n = g.columnCount, area = g.imageArea

    let out = Tensor(uninitializedShape: [batch, cout, outH, outW])  // [B, Cout, Ho, Wo]
    let xs = x.data  // [B, Cin, N]
    let w = weight.data  // [Cin, K]
    forEachChunk(batch: batch, columnFloatsPerImage: k * n, needsScratch: !g.isPointwise) { images, scratch in
        let xChunk = xs + images.lowerBound * cin * n  // [images, Cin, N]
        let outChunk = out.data + images.lowerBound * cout * area  // [images, Cout, Ho, Wo]
        // Start from the bias (or 0) chunk by chunk, so the outputs are still in cache when added onto.
        fillChannels(outChunk, batch: images.count, channels: cout, area: area, values: bias?.data)
        // cols_b [K, N] = Wᵀ [K, Cin] · x_b [Cin, N]; pointwise, cols_b is y_b and sgemm adds onto the bias
        BLAS.sgemmBatched(count: images.count, transA: true, transB: false, m: k, n: n, k: cin,
                          a: w, lda: k, strideA: 0, b: xChunk, ldb: n, strideB: cin * n,
                          beta: scratch == nil ? 1 : 0, c: scratch ?? outChunk, ldc: n, strideC: k * n)
        if let scratch { col2im(scratch, planes: images.count * cout, g, addingInto: outChunk) }
    }

    return out.recordGraph(inputs: [x, weight] + (bias.map { [$0] } ?? [])) { _, grad in
        let gy = grad.data  // [B, Cout, Ho, Wo]
        if let bias, bias.requiresGrad {
            sumPerChannel(gy, batch: batch, channels: cout, area: area, addingInto: bias.gradientBuffer())
        }
        let gw = weight.requiresGrad ? weight.gradientBuffer() : nil  // [Cin, K]
        let gx = x.requiresGrad ? x.gradientBuffer() : nil  // [B, Cin, N]
        if gw == nil && gx == nil { return }
        forEachChunk(batch: batch, columnFloatsPerImage: k * n, needsScratch: !g.isPointwise) { images, scratch in
            let gyChunk = gy + images.lowerBound * cout * area  // [images, Cout, Ho, Wo]
            var columns = gyChunk  // [images, K, N]: dy unfolded
            if let scratch {
                im2col(gyChunk, planes: images.count * cout, g, into: scratch)
                columns = scratch
            }
            if let gx {
                // dx_b [Cin, N] += W [Cin, K] · dcols_b [K, N]   (conv2d's forward)
                BLAS.sgemmBatched(count: images.count, transA: false, transB: false, m: cin, n: n, k: k,
                                  a: w, lda: k, strideA: 0, b: columns, ldb: n, strideB: k * n,
                                  beta: 1, c: gx + images.lowerBound * cin * n, ldc: n, strideC: cin * n)
            }
            if let gw {
                // dW [Cin, K] += x_b [Cin, N] · dcols_bᵀ [N, K], summed over the images
                BLAS.sgemmBatched(count: images.count, transA: false, transB: true, m: cin, n: k, k: n,
                                  a: xs + images.lowerBound * cin * n, lda: n, strideA: cin * n,
                                  b: columns, ldb: n, strideB: k * n, beta: 1, c: gw, ldc: k, strideC: 0)
            }
        }
    }
}

// MARK: - Resampling

/// Nearest-neighbour 2× upsampling: x [B, C, H, W] → [B, C, 2H, 2W], each pixel copied to a 2×2 block.
/// Backward sums each block's four gradients.
public func upsampleNearest2x(_ x: Tensor) -> Tensor {
    checkShape(x.rank == 4, "upsampleNearest2x: input must be [B, C, H, W], got shape \(x.shape)")
    let width = x.shape[3], rows = x.count / max(1, width)  // rows: B·C·H input rows of W pixels
    let out = Tensor(uninitializedShape: [x.shape[0], x.shape[1], 2 * x.shape[2], 2 * width])  // [B, C, 2H, 2W]
    let xs = x.data, ys = out.data
    // Input row r (plane p, row h, r = p·H + h) becomes output rows 2h and 2h + 1 of plane p: rows 2r, 2r + 1.
    Parallel.forRows(rows, width: 4 * width) { range in
        for r in range {
            let src = xs + r * width, top = ys + 2 * r * 2 * width, bottom = top + 2 * width
            for i in 0..<width {
                top[2 * i] = src[i]
                top[2 * i + 1] = src[i]
            }
            bottom.update(from: top, count: 2 * width)
        }
    }
    return out.recordGraph(inputs: [x]) { _, grad in
        let gx = x.gradientBuffer(), gy = grad.data  // [B, C, H, W], [B, C, 2H, 2W]
        Parallel.forRows(rows, width: 4 * width) { range in
            for r in range {
                let top = gy + 2 * r * 2 * width, bottom = top + 2 * width, dst = gx + r * width
                for i in 0..<width {
                    dst[i] += (top[2 * i] + top[2 * i + 1]) + (bottom[2 * i] + bottom[2 * i + 1])
                }
            }
        }
        FlopCounter.add(x.count * 4)  // three adds per block, and one into the gradient
    }
}

/// 2×2 average pooling with stride 2: x [B, C, H, W] → [B, C, H/2, W/2] (H and W even).
/// Backward spreads a quarter of each gradient over its block.
public func avgPool2x(_ x: Tensor) -> Tensor {
    checkShape(x.rank == 4, "avgPool2x: input must be [B, C, H, W], got shape \(x.shape)")
    checkShape(x.shape[2] % 2 == 0 && x.shape[3] % 2 == 0,
               "avgPool2x: height and width must be even, got \(x.shape[2])×\(x.shape[3]) (input \(x.shape)); pad or crop first")
    let width = x.shape[3], outW = width / 2
    let out = Tensor(uninitializedShape: [x.shape[0], x.shape[1], x.shape[2] / 2, outW])  // [B, C, H/2, W/2]
    let rows = out.count / max(1, outW)  // B·C·H/2 output rows; output row r reads input rows 2r and 2r + 1
    let xs = x.data, ys = out.data
    Parallel.forRows(rows, width: 4 * outW) { range in
        for r in range {
            let top = xs + 2 * r * width, bottom = top + width, dst = ys + r * outW
            for i in 0..<outW {
                dst[i] = 0.25 * ((top[2 * i] + top[2 * i + 1]) + (bottom[2 * i] + bottom[2 * i + 1]))
            }
        }
    }
    FlopCounter.add(x.count)  // three adds and a multiply per block of four
    return out.recordGraph(inputs: [x]) { _, grad in
        let gx = x.gradientBuffer(), gy = grad.data  // [B, C, H, W], [B, C, H/2, W/2]
        Parallel.forRows(rows, width: 4 * outW) { range in
            for r in range {
                let top = gx + 2 * r * width, bottom = top + width, src = gy + r * outW
                for i in 0..<outW {
                    let quarter = 0.25 * src[i]
                    top[2 * i] += quarter
                    top[2 * i + 1] += quarter
                    bottom[2 * i] += quarter
                    bottom[2 * i + 1] += quarter
                }
            }
        }
        FlopCounter.add(x.count * 5 / 4)  // a multiply per block, an add per pixel
    }
}
