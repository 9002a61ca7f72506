// Rotary position embedding (Su et al. 2021, RoFormer, §3.4), in the half-split layout Llama uses:
// for each head, pair i is (x[i], x[i + Dh/2]) and is rotated by angle pos · base^(−2i/Dh).
// The backward pass is the rotation by the opposite angle (a rotation's transpose is its inverse).
import Foundation

/// Rotates x [B, T, H, Dh] by position; `positions` holds B·T positions (documents packed in one
/// sequence may restart at 0) or just T, shared by every sequence of the batch.
public func rotaryEmbedding(_ x: Tensor, positions: [Int32], base: Float = 10_000) -> Tensor {
    checkShape(x.rank == 4 && x.shape[3] % 2 == 0, "rotaryEmbedding: input \(x.shape) must be [B, T, H, Dh] with even Dh")
    let (b, t, h, dh) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    checkShape(positions.count == b * t || positions.count == t,
               "rotaryEmbedding: \(positions.count) positions for B·T = \(b)·\(t)")
    // cos/sin of every position up to the largest asked for [P, Dh/2], cached per (base, Dh): every
    // layer's queries and keys of a step use the same positions, and a position's angles never change.
    let (cosines, sines) = RotaryTables.shared.tables(base: base, headWidth: dh, positions: positions)
    let out = Tensor(uninitializedShape: x.shape)
    rotate(x.data, into: out.data, tokens: b * t, heads: h, headWidth: dh, positions: positions, perSequence: positions.count == t ? t : 0,
           cosines.data, sines.data, inverse: false, accumulate: false)
    FlopCounter.add(3 * x.count)
    return out.recordGraph(inputs: [x]) { _, g in
        let (gx, fresh) = x.gradientBufferForWriting()
        rotate(g.data, into: gx, tokens: b * t, heads: h, headWidth: dh, positions: positions, perSequence: positions.count == t ? t : 0,
               cosines.data, sines.data, inverse: true, accumulate: !fresh)
        withExtendedLifetime((cosines, sines)) {}
    }
}

/// Rotates `tokens` rows of H heads; token n uses the table row of position positions[n] (or
/// positions[n % perSequence] when the positions are shared by every sequence, perSequence = T).
private func rotate(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>,
                    tokens: Int, heads: Int, headWidth: Int, positions: [Int32], perSequence: Int,
                    _ cosines: UnsafePointer<Float>, _ sines: UnsafePointer<Float>, inverse: Bool, accumulate: Bool) {
    let half = headWidth / 2, sign: Float = inverse ? -1 : 1
    Parallel.forRanges(tokens, minimumPerThread: max(1, 8192 / (heads * headWidth))) { r in
        for token in r {
            let position = Int(positions[perSequence > 0 ? token % perSequence : token])
            let c = cosines + position * half, s = sines + position * half
            for head in 0..<heads {
                let x = source + (token * heads + head) * headWidth, y = target + (token * heads + head) * headWidth
                for i in 0..<half {
                    let x1 = x[i], x2 = x[i + half], si = sign * s[i]
                    let y1 = x1 * c[i] - x2 * si, y2 = x1 * si + x2 * c[i]
                    if accumulate { y[i] += y1; y[i + half] += y2 } else { y[i] = y1; y[i + half] = y2 }
                }
            }
        }
    }
}

/// The cos/sin tables of RoPE, per (base, Dh), grown to the largest position seen. A grown table is a
/// new pair of tensors (rules recorded earlier keep the old ones), and entry p is computed the same
/// way whatever the table's size, so results do not depend on the order of calls.
final class RotaryTables: @unchecked Sendable {
    static let shared = RotaryTables()
    private struct Key: Hashable { let base: Float, headWidth: Int }
    private var tables: [Key: (cos: Tensor, sin: Tensor)] = [:]
    private let lock = NSLock()

    func tables(base: Float, headWidth: Int, positions: [Int32]) -> (cos: Tensor, sin: Tensor) {
        var largest: Int32 = 0
        for p in positions {
            precondition(p >= 0, "rotaryEmbedding: position \(p) is negative")
            largest = max(largest, p)
        }
        let key = Key(base: base, headWidth: headWidth), half = headWidth / 2
        lock.lock()
        defer { lock.unlock() }
        if let existing = tables[key], existing.cos.shape[0] > Int(largest) { return existing }
        let count = max(Int(largest) + 1, 2 * (tables[key]?.cos.shape[0] ?? 0), 256)
        let cosines = Tensor(uninitializedShape: [count, half]), sines = Tensor(uninitializedShape: [count, half])
        var frequencies = [Float](repeating: 0, count: half)
        for i in 0..<half { frequencies[i] = Foundation.pow(base, -2 * Float(i) / Float(headWidth)) }
        for position in 0..<count {
            let p = Float(position)
            for i in 0..<half {
                cosines.data[position * half + i] = Foundation.cos(p * frequencies[i])
                sines.data[position * half + i] = Foundation.sin(p * frequencies[i])
            }
        }
        tables[key] = (cosines, sines)
        return (cosines, sines)
    }
}

/// The rotation angles of the tokens of one call, as rows of cos/sin tables [rows, Dh/2] and the row each
/// token reads (B·T of them, or T shared by every sequence).
///
/// 1-D: row = the token's position in the shared table (`RotaryTables`). M-RoPE (Qwen2-VL, Wang et al.
/// 2024, §2.1): each head's Dh/2 frequency pairs are cut into three sections, a quarter for a temporal
/// axis and the rest halved for height and width, and each section turns by its own position: a text
/// token has all three equal to its 1-D position (so text is rotated exactly as by 1-D RoPE), an image
/// token at (row, column) of its grid has t = the image's first position, h = t + row, w = t + column.
public struct RotaryAngles {
    let cosines: Tensor, sines: Tensor
    let rows: [Int32]

    /// 1-D RoPE of `positions`.
    public init(positions: [Int32], base: Float, headWidth: Int) {
        (cosines, sines) = RotaryTables.shared.tables(base: base, headWidth: headWidth, positions: positions)
        rows = positions
    }

    /// M-RoPE of three position axes (each B·T long; equal for text tokens).
    public init(temporal: [Int32], height: [Int32], width: [Int32], base: Float, headWidth: Int) {
        precondition(temporal.count == height.count && height.count == width.count,
                     "RotaryAngles: axes of \(temporal.count), \(height.count) and \(width.count) tokens")
        let half = headWidth / 2, sections = Self.sections(half: half)
        let tokens = temporal.count
        cosines = Tensor(uninitializedShape: [tokens, half])
        sines = Tensor(uninitializedShape: [tokens, half])
        for token in 0..<tokens {
            for i in 0..<half {
                let axis = i < sections.temporal ? temporal : i < sections.temporal + sections.height ? height : width
                // The same Float expression as the 1-D table, so a text token's angles are its bits.
                let angle = Float(axis[token]) * Foundation.pow(base, -2 * Float(i) / Float(headWidth))
                cosines.data[token * half + i] = Foundation.cos(angle)
                sines.data[token * half + i] = Foundation.sin(angle)
            }
        }
        rows = (0..<Int32(tokens)).map { $0 }
    }

    /// Frequency pairs per axis: temporal a quarter (Qwen2-VL's 16 of 64), height and width the rest, halved.
    static func sections(half: Int) -> (temporal: Int, height: Int) {
        let spatial = (half - half / 4) / 2
        return (half - 2 * spatial, spatial)
    }
}
