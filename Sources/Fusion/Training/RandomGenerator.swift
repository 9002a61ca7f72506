// RandomGenerator: Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror & Shaw,
// "Parallel Random Numbers: As Easy as 1, 2, 3" (SC 2011, §3–4), as used by cuRAND, PyTorch's CUDA
// generator and TensorFlow's stateless ops (JAX uses its sibling Threefry from the same paper).
// Verified against Random123's known-answer vectors.
//
// Counter-based means every 32-bit output word is a pure function of where it sits:
//
//   word(seed, stream, n) = Philox(counter: (n/4 lo, n/4 hi, stream lo, stream hi), key: seed)[n % 4]
//
// A generator is just (seed, stream, position n). Filling a buffer writes element i from word
// position + i (uniform) or from words position + 2⌊i/2⌋, +1 (normal, Box–Muller pairs), so any
// number of threads may fill any ranges in any order and get the same values: results never depend
// on the thread count. Saving the three numbers saves the generator exactly.
//
// Streams: `stream(i)` and `split(key:)` derive a child stream id by applying Philox to
// (i, parent stream) under a domain-separated key. The child depends only on (seed, parent stream, i),
// not on how many values the parent has drawn, so the data loader, dropout, initialisation and
// sampling each get their own sequence and adding draws to one never shifts another. Distinct
// streams are distinct Philox counters under one key, hence independent (paper, §2); two derived
// ids collide with probability ~2⁻⁶⁴ per pair.
//
// Floats use the top 24 bits of a word: uniform values are k·2⁻²⁴, k ∈ [0, 2²⁴), so exactly in
// [0, 1). Box–Muller's radius uses u ∈ (0, 1] with the same resolution, which truncates normal
// samples at |z| ≤ √(−2 ln 2⁻²⁴) ≈ 5.77 (probability mass beyond: ~8·10⁻⁹, irrelevant for training).

import Foundation

/// A seeded, counter-based (Philox4x32-10) random generator with exact save/restore and
/// independent derived streams.
public struct RandomGenerator: RandomNumberGenerator {
    /// The seed: Philox's 64-bit key.
    public let seed: UInt64
    /// Which stream of this seed: 0 for the root, derived ids for `stream(_:)` and `split(key:)`.
    public let streamID: UInt64
    /// How many 32-bit words of the stream have been used.
    public private(set) var position: UInt64

    /// The root stream of `seed`, at its start.
    public init(seed: UInt64) {
        self.init(seed: seed, streamID: 0, position: 0)
    }

    init(seed: UInt64, streamID: UInt64, position: UInt64) {
        self.seed = seed
        self.streamID = streamID
        self.position = position
    }

    // MARK: Save and restore

    static let stateFormatVersion: UInt64 = 1

    /// Everything needed to continue this generator exactly: [format version, seed, stream, position].
    public var state: [UInt64] { [Self.stateFormatVersion, seed, streamID, position] }

    /// Restores a generator saved with `state`; throws when the array is not such a state.
    public init(state: [UInt64]) throws {
        guard state.count == 4, state[0] == Self.stateFormatVersion else {
            throw RandomGeneratorStateError(description:
                "RandomGenerator(state:): expected [\(Self.stateFormatVersion), seed, stream, position] "
                + "(4 values, format version \(Self.stateFormatVersion)), got \(state); "
                + "the checkpoint was written by another version of Fusion or is not a generator state")
        }
        self.init(seed: state[1], streamID: state[2], position: state[3])
    }

    // MARK: Derived streams

    /// An independent generator for sub-stream `index` of this one (e.g. one per data-loader worker,
    /// per epoch, per layer). Depends only on (seed, this stream, index), not on this generator's position.
    public func stream(_ index: Int) -> RandomGenerator {
        precondition(index >= 0, "RandomGenerator.stream: index must be ≥ 0, got \(index)")
        return derived(UInt64(index), domain: Self.streamDomain)
    }

    /// An independent generator named by `key` ("data", "dropout", "init", "sampling"), stable across
    /// runs and platforms (the name is hashed with FNV-1a, not Swift's per-process seeded `Hasher`).
    public func split(key: String) -> RandomGenerator {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a 64-bit offset basis
        for byte in key.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3  // FNV prime
        }
        return derived(hash, domain: Self.splitDomain)
    }

    // Keys XORed into the seed when deriving ids, so that `stream(i)`, `split(key:)` and the output
    // words of a stream are three different Philox functions ("STRM"/"IDX0", "SPLT"/"KEY0").
    static let streamDomain: (UInt32, UInt32) = (0x5354_524D, 0x4944_5830)
    static let splitDomain: (UInt32, UInt32) = (0x5350_4C54, 0x4B45_5930)

    func derived(_ index: UInt64, domain: (UInt32, UInt32)) -> RandomGenerator {
        let key = (UInt32(truncatingIfNeeded: seed) ^ domain.0, UInt32(truncatingIfNeeded: seed >> 32) ^ domain.1)
        let out = Self.philox((UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                               UInt32(truncatingIfNeeded: streamID), UInt32(truncatingIfNeeded: streamID >> 32)),
                              key: key)
        return RandomGenerator(seed: seed, streamID: UInt64(out.0) | UInt64(out.1) << 32, position: 0)
    }

    // MARK: Scalar draws

    /// 64 uniformly random bits (two words: the first is the low half).
    public mutating func next() -> UInt64 {
        var cursor = makeCursor()
        let low = cursor.next(), high = cursor.next()
        position = cursor.word
        return UInt64(low) | UInt64(high) << 32
    }

    /// A uniform Float in [0, 1) with 24 random bits (one word). A run of `nextFloat()` calls gives
    /// the same values as `fill(uniform:)` over the same words.
    public mutating func nextFloat() -> Float {
        var cursor = makeCursor()
        let value = Self.unitFloat(cursor.next())
        position = cursor.word
        return value
    }

    /// A uniform Double in [0, 1) with 53 random bits (two words).
    public mutating func nextDouble() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// A uniform integer in 0..<bound, without modulo bias (Lemire, "Fast Random Integer Generation
    /// in an Interval", ACM TOMACS 2019: multiply, reject the few low products that would bias).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "RandomGenerator.nextInt(below:): bound must be > 0, got \(bound)")
        let n = UInt64(bound)
        var (high, low) = next().multipliedFullWidth(by: n)
        if low < n {
            let threshold = (0 &- n) % n  // 2⁶⁴ mod n
            while low < threshold { (high, low) = next().multipliedFullWidth(by: n) }
        }
        return Int(high)
    }

    /// A standard normal sample (Box–Muller, cosine branch; two words). Equals element 0 of a
    /// `fill(normal:)` started at the same position.
    public mutating func normal() -> Float {
        var cursor = makeCursor()
        let (z0, _) = Self.boxMuller(cursor.next(), cursor.next())
        position = cursor.word
        return z0
    }

    // MARK: Permutations

    /// Shuffles `array` in place (Fisher–Yates with `nextInt(below:)`; our own loop rather than the
    /// standard library's `shuffle(using:)`, whose algorithm may change between Swift versions).
    public mutating func shuffle<T>(_ array: inout [T]) {
        var i = array.count - 1
        while i > 0 {
            array.swapAt(i, nextInt(below: i + 1))
            i -= 1
        }
    }

    /// A uniformly random permutation of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        precondition(n >= 0, "RandomGenerator.permutation: n must be ≥ 0, got \(n)")
        var result = Array(0..<n)
        shuffle(&result)
        return result
    }

    // MARK: Bulk fills (parallel, thread-count independent)

    /// Fills `buffer[0..<count]` with uniform values in `range` (lower + width·u, u ∈ [0, 1); the upper
    /// end can be reached through Float rounding of the product). Uses `count` words.
    public mutating func fill(uniform buffer: UnsafeMutablePointer<Float>, count: Int, range: Range<Float> = 0..<1) {
        precondition(count >= 0, "RandomGenerator.fill: negative count \(count)")
        let start = position, key = philoxKey, stream = streamID
        let lower = range.lowerBound, width = range.upperBound - range.lowerBound
        // ~10 cycles per element: a second thread pays from a few thousand elements on.
        Parallel.forRanges(count, minimumPerThread: 8_192) { range in
            var cursor = PhiloxCursor(key: key, stream: stream, word: start &+ UInt64(range.lowerBound))
            for i in range {
                buffer[i] = lower + width * Self.unitFloat(cursor.next())
            }
        }
        position = start &+ UInt64(count)
    }

    /// Fills `buffer[0..<count]` with normal values (mean + std·z). Elements 2j and 2j+1 are the
    /// cosine and sine branches of one Box–Muller pair from words position + 2j, +2j+1; uses `count`
    /// words rounded up to even.
    public mutating func fill(normal buffer: UnsafeMutablePointer<Float>, count: Int, mean: Float = 0, std: Float = 1) {
        precondition(count >= 0, "RandomGenerator.fill: negative count \(count)")
        let start = position, key = philoxKey, stream = streamID
        let pairs = (count + 1) / 2
        // log, sqrt, sin, cos per pair: a second thread pays from ~1K pairs on.
        Parallel.forRanges(pairs, minimumPerThread: 2_048) { range in
            var cursor = PhiloxCursor(key: key, stream: stream, word: start &+ 2 &* UInt64(range.lowerBound))
            for j in range {
                let (z0, z1) = Self.boxMuller(cursor.next(), cursor.next())
                buffer[2 * j] = mean + std * z0
                if 2 * j + 1 < count { buffer[2 * j + 1] = mean + std * z1 }
            }
        }
        position = start &+ 2 &* UInt64(pairs)
    }

    /// Fills every element of `tensor` with uniform values in `range`.
    public mutating func fill(uniform tensor: Tensor, range: Range<Float> = 0..<1) {
        fill(uniform: tensor.data, count: tensor.count, range: range)
    }

    /// Fills every element of `tensor` with normal values (mean + std·z).
    public mutating func fill(normal tensor: Tensor, mean: Float = 0, std: Float = 1) {
        fill(normal: tensor.data, count: tensor.count, mean: mean, std: std)
    }

    // MARK: Philox4x32-10 and conversions

    var philoxKey: (UInt32, UInt32) { (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)) }

    func makeCursor() -> PhiloxCursor { PhiloxCursor(key: philoxKey, stream: streamID, word: position) }

    /// Philox4x32 with 10 rounds (Salmon et al. 2011, §3.3; constants from Random123's philox.h).
    @inline(__always)
    static func philox(_ counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32))
        -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
            let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
            if round < 9 {  // the key schedule: Weyl increments (golden ratio, √3 − 1)
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
        }
        return (c0, c1, c2, c3)
    }

    /// The top 24 bits of a word as k·2⁻²⁴ ∈ [0, 1), exact in Float.
    @inline(__always)
    static func unitFloat(_ word: UInt32) -> Float { Float(word >> 8) * 0x1p-24 }

    /// Box–Muller (1958): two uniforms → two independent standard normals.
    @inline(__always)
    static func boxMuller(_ w1: UInt32, _ w2: UInt32) -> (Float, Float) {
        let u1 = Float((w1 >> 8) + 1) * 0x1p-24  // (0, 1]: log stays finite
        let u2 = Float(w2 >> 8) * 0x1p-24
        let radius = (-2 * Foundation.log(u1)).squareRoot()
        let angle = 2 * Float.pi * u2
        return (radius * Foundation.cos(angle), radius * Foundation.sin(angle))
    }
}

/// Walks the words of one stream from a position, computing each Philox block once.
struct PhiloxCursor {
    let key: (UInt32, UInt32)
    let stream: (UInt32, UInt32)
    /// The position of the next word.
    var word: UInt64
    var block: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    var loadedBlock: UInt64

    init(key: (UInt32, UInt32), stream: UInt64, word: UInt64) {
        self.key = key
        self.stream = (UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
        self.word = word
        loadedBlock = ~(word >> 2)  // differs from the first block: forces a load
    }

    @inline(__always)
    mutating func next() -> UInt32 {
        let index = word >> 2
        if index != loadedBlock {
            block = RandomGenerator.philox((UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                                            stream.0, stream.1), key: key)
            loadedBlock = index
        }
        let lane = word & 3
        word &+= 1
        switch lane {
        case 0: return block.0
        case 1: return block.1
        case 2: return block.2
        default: return block.3
        }
    }
}

/// A generator state that cannot be restored; the message says what was expected.
public struct RandomGeneratorStateError: Error, CustomStringConvertible {
    public let description: String
}

extension Tensor {
    /// A tensor of normal values (mean + std·z) drawn from `generator`.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float,
                                    generator: inout RandomGenerator, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        generator.fill(normal: t, mean: mean, std: std)
        t.requiresGrad = requiresGrad
        return t
    }

    /// A tensor of uniform values in `range` drawn from `generator`.
    public static func randomUniform(_ shape: [Int], range: Range<Float>,
                                     generator: inout RandomGenerator, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        generator.fill(uniform: t, range: range)
        t.requiresGrad = requiresGrad
        return t
    }
}
