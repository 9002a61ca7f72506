// The independent parts of an evaluation, and how a data-parallel run shares them out: each guidance
// scale's images (the costly parts), the captions, the perplexity. A part's numbers travel to rank 0 as
// JSON, whose decimal form of a Float or Double reads back to the same bits.
import Foundation
import Fusion

enum EvaluationPart: Equatable, CustomStringConvertible {
    case textPerplexity
    case images(guidanceScale: Float)
    case captions
    /// qa_accuracy: the templated questions about the test images.
    case questions
    /// fewshot_accuracy_kK: classification from K labelled examples in context.
    case fewShot(Int)

    /// The parts of one evaluation, in the order their results are logged.
    static func all(_ eval: ExperimentConfig.EvalConfig) -> [EvaluationPart] {
        [.textPerplexity] + eval.allGuidanceScales.map { .images(guidanceScale: $0) } + [.captions, .questions]
            + eval.fewShot.map { .fewShot($0) }
    }

    /// Rough relative cost: generating and scoring images dominates, captions are shorter, the
    /// perplexity is a few forward passes.
    var cost: Int {
        switch self {
        case .images: return 4
        case .captions, .questions, .fewShot: return 2
        case .textPerplexity: return 1
        }
    }

    /// The rank that computes each part: the costliest first, each to the least loaded rank (ties to the
    /// lowest), a pure function of the parts and the number of ranks.
    static func owners(of parts: [EvaluationPart], ranks: Int) -> [Int] {
        var load = [Int](repeating: 0, count: max(ranks, 1)), owners = [Int](repeating: 0, count: parts.count)
        for index in parts.indices.sorted(by: { (parts[$0].cost, -$0) > (parts[$1].cost, -$1) }) {
            let rank = load.indices.min { (load[$0], $0) < (load[$1], $1) }!
            owners[index] = rank
            load[rank] += parts[index].cost
        }
        return owners
    }

    var description: String {
        switch self {
        case .textPerplexity: return "text_ppl"
        case .images(let scale): return "images at guidance \(scale)"
        case .captions: return "caption_accuracy"
        case .questions: return "qa_accuracy"
        case .fewShot(let k): return "fewshot_accuracy_k\(k)"
        }
    }

    struct Result {
        var values: [(String, Double)]
        /// The images shown in the samples grid and the log ([n, 1, H, W] in [0, 1]).
        var samples: Tensor? = nil
    }

    private struct Wire: Codable {
        let part: Int, names: [String], values: [Double]
        let sampleShape: [Int]?, samples: [Float]?
    }

    private static let nonFinite = (positive: "inf", negative: "-inf", nan: "nan")

    static func encode(_ results: [Int: Result]) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: nonFinite.positive,
                                                                      negativeInfinity: nonFinite.negative, nan: nonFinite.nan)
        let wire = results.sorted { $0.key < $1.key }.map { index, result in
            Wire(part: index, names: result.values.map(\.0), values: result.values.map(\.1), sampleShape: result.samples?.shape,
                 samples: result.samples.map { Array(UnsafeBufferPointer(start: $0.data, count: $0.count)) })
        }
        return Array(try encoder.encode(wire))
    }

    static func decode(_ bytes: [UInt8]) throws -> [Int: Result] {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: nonFinite.positive,
                                                                        negativeInfinity: nonFinite.negative, nan: nonFinite.nan)
        var results: [Int: Result] = [:]
        for wire in try decoder.decode([Wire].self, from: Data(bytes)) {
            var samples: Tensor? = nil
            if let shape = wire.sampleShape, let values = wire.samples {
                guard shape.reduce(1, *) == values.count else {
                    throw RunFailure(description: "evaluation: a rank sent \(values.count) sample values for shape \(shape)")
                }
                samples = Tensor(values, shape: shape)
            }
            results[wire.part] = Result(values: Array(zip(wire.names, wire.values)), samples: samples)
        }
        return results
    }
}
