// The evaluation protocol of issue 21: perplexity is the cross-entropy alone whatever the recipe's
// auxiliary terms (pinned on a hand computation with a large z-loss), every guidance scale of
// eval.guidance_scales is logged with its N, and the data order is the one configured (the share of
// image documents that follow their caption, counted on the real document stream and logged).
import XCTest
import Foundation
@testable import Experiments
@testable import Fusion

final class FairEvaluationTests: XCTestCase {
    /// Chameleon with z-loss 0.05: the training text loss is CE + z·mean(log² Z); perplexity reads CE alone.
    func testPerplexityIsTheCrossEntropyAloneWhenTheLossHasAZLoss() throws {
        var config = tinyRecipe(.chameleon, initStd: 1)
        config.zLoss = 0.05
        var generator = RandomGenerator(seed: 11)
        let model = try FusionModel(config: config, vocabulary: testVocabulary(imageCodes: 6), generator: &generator)
        let batch = try model.layout.pack([model.textDocument([1, 5, 2, 9, 3, 3, 7]), model.textDocument([4, 0, 6, 11, 2])], length: 16, rows: 2)

        // By hand, in Double, from the model's logits: log Z and −log p of each next token.
        let logits = withoutGradients { model.tokenLogits(batch) }, v = logits.shape[1]
        var crossEntropy = 0.0, zTerm = 0.0, count = 0
        for (row, target) in batch.nextTokenTargets.enumerated() where target >= 0 {
            let x = (0..<v).map { Double(logits.data[row * v + $0]) }
            let peak = x.max()!
            let logZ = peak + log(x.reduce(0) { $0 + exp($1 - peak) })
            crossEntropy += logZ - x[Int(target)]
            zTerm += Double(config.zLoss) * logZ * logZ
            count += 1
        }
        XCTAssertEqual(count, 8 + 6)  // each document: BOS predicts its first token, its last token predicts EOS
        let measured = model.textCrossEntropy(batch)
        XCTAssertEqual(measured.count, count)
        XCTAssertEqual(measured.sum / Double(count), crossEntropy / Double(count), accuracy: 1e-5 * crossEntropy / Double(count))
        // The training loss carries the z-loss on top, by a margin the comparison above would see.
        var unused = RandomGenerator(seed: 0)
        let trainingTextLoss = Double(withoutGradients { model.loss(batch, generator: &unused) }.part("text_loss")!)
        XCTAssertEqual(trainingTextLoss, (crossEntropy + zTerm) / Double(count), accuracy: 1e-5 * trainingTextLoss)
        XCTAssertGreaterThan(zTerm / Double(count), 0.01)
    }

    /// A run evaluated at guidance scales [0, 1] with guidance_scale 2 logs three rows per evaluation, the
    /// headline metrics being the row of scale 2; the scales differ in their images.
    func testEveryGuidanceScaleIsLoggedWithItsN() throws {
        let root = try temporaryDirectory()
        let overrides = RunFaultTests.tinyOverrides(recipe: "showo", cache: root + "/cache") + ["eval.guidance_scales=[1, 0]", "eval.guidance_scale=2"]
        let config = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: overrides)
        XCTAssertEqual(config.eval.allGuidanceScales, [0, 1, 2])
        try ExperimentRun.run(config, yaml: try ConfigLoader.yaml(config), directory: root + "/run", overwrite: false, resume: false)
        let log = try HDF5File.open(root + "/run/log.h5")
        let run = try log.root.group("runs/tiny")
        let rows = try run.group("eval_guidance")
        XCTAssertEqual(try rows.dataset("step").read(as: Int64.self), [6, 6, 6, 12, 12, 12])
        XCTAssertEqual(try rows.dataset("guidance_scale").read(as: Double.self), [0, 1, 2, 0, 1, 2])
        XCTAssertEqual(try rows.dataset("fd_fmnist_n").read(as: Double.self), Array(repeating: 8, count: 6))
        let fd = try rows.dataset("fd_fmnist").read(as: Double.self), t2i = try rows.dataset("t2i_accuracy").read(as: Double.self)
        XCTAssertEqual(try run.dataset("eval/fd_fmnist").read(as: Double.self), [fd[2], fd[5]])
        XCTAssertEqual(try run.dataset("eval/t2i_accuracy").read(as: Double.self), [t2i[2], t2i[5]])
        XCTAssertNotEqual(fd[3], fd[5], "guidance 0 and 2 gave the same images")
        try log.close()
        // The report shows the last evaluation's curve and its best scale.
        let curve = try XCTUnwrap(try GuidanceCurve(run: try HDF5File.open(root + "/run/log.h5").root.group("runs/tiny")))
        XCTAssertEqual(curve.points.map(\.scale), [0, 1, 2])
        XCTAssertEqual(curve.best?.fd, fd[3...5].min())
        let markdown = try Report.write(results: root + "/run/log.h5", to: root + "/report")
        XCTAssert(markdown.contains("FD and t2i over guidance") && markdown.contains("| tiny | \(String(format: "%.4g", fd[3...5].min()!))"), markdown)

        for bad in ["eval.guidance_scales=[-1]", "eval.guidance_scales=[0, 1, 2, 3, 4, 5, 6, 7, 8]"] {
            XCTAssertThrowsError(try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: [bad])) {
                XCTAssert("\($0)".contains("eval.guidance_scales"), "\($0)")
            }
        }
    }

    /// With image_first_share 0.2 and caption dropout 0.1 (Transfusion), the document stream puts the image
    /// first in ≈ 20 % of pairs and conditions ≈ 72 % of images on a caption, and the log reports that share.
    func testTheDataOrderIsTheConfiguredOneAndTheConditionedShareIsLogged() throws {
        let root = try temporaryDirectory()
        let config = try ExperimentConfig.load(file: "configs/tiny.yaml", overrides: RunFaultTests.tinyOverrides(recipe: "transfusion", cache: root + "/cache"))
        XCTAssertEqual(config.data.imageFirstShare, 0.2)
        XCTAssertEqual(config.recipe.captionDropout, 0.1)
        let data = try MultimodalData(config: config, log: { _ in })
        var recipe = config.recipe
        recipe.imageGrid = data.autoencoder.gridSide
        recipe.latentChannels = data.autoencoder.latentChannels
        var generator = RandomGenerator(seed: 0)
        let model = try FusionModel(config: recipe, vocabulary: data.vocabulary, generator: &generator)
        var resolved = config
        resolved.recipe = model.config
        let stream = DocumentStream(data: data, model: model, config: resolved)
        let specials = Set(data.vocabulary.specialIDs)
        var images = 0, imageFirst = 0, captionFirst = 0
        for step in 0..<1500 {
            for document in stream.documents(step: step) where document.hasImage {
                images += 1
                if case .text(let ids)? = document.segments.first, ids.contains(where: { !specials.contains($0) }) { captionFirst += 1 }
                // A caption after the image: an understanding document (a dropped caption leaves the image last).
                if case .text(let ids)? = document.segments.last, ids.contains(where: { !specials.contains($0) }) { imageFirst += 1 }
            }
        }
        // Each share is a binomial proportion over the documents counted; ± 4 standard errors.
        func check(_ share: Double, _ expected: Double) {
            XCTAssertEqual(share, expected, accuracy: 4 * (expected * (1 - expected) / Double(images)).squareRoot(), "\(images) image documents")
        }
        XCTAssertGreaterThan(images, 1000)
        check(Double(imageFirst) / Double(images), 0.2)
        check(Double(captionFirst) / Double(images), 0.8 * 0.9)

        var window = LossWindow()
        for (total, first) in [(3, 2), (1, 1), (4, 2)] {
            window.add("image_documents", Double(total))
            window.add("caption_first_image_documents", Double(first))
        }
        XCTAssertEqual(window.means().first { $0.0 == "image_conditioned_share" }?.1, 5.0 / 8.0)
    }
}
