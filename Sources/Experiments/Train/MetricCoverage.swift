// Which image and caption metrics a run's data and reference classifier allow, and why the others are
// not computed: the reference reads images of one shape and knows one set of classes, and captions can
// be scored only against labels with names. Printed at the start of a run on your own data and stored
// in its log (the run attribute image_metrics), so a missing metric is never a silent gap.
struct MetricCoverage {
    /// The reference classifier reads the test images: fd_NAME and kid_NAME are distances in its features.
    let readsImages: Bool
    /// It also knows their labels' classes: t2i_accuracy asks it for the prompted class.
    let readsLabels: Bool
    /// The test images have labels, and the labels names: caption_accuracy.
    let scoresCaptions: Bool
    let description: String

    init(metrics: ImageMetrics, data: MultimodalData) {
        let shape = Array(data.test.images.shape.dropFirst())
        readsImages = metrics.reads(imageShape: shape)
        readsLabels = readsImages && data.test.labels != nil && metrics.knows(classNames: data.classNames)
        scoresCaptions = data.test.labels != nil && !data.classNames.isEmpty
        func dimensions(_ shape: [Int]) -> String { shape.map(String.init).joined(separator: "×") }
        let reference = "reference classifier" + (metrics.classifierSHA256.map { " \($0.prefix(12))" } ?? "")
        description = [
            readsImages
                ? "\(metrics.fdName), \(metrics.kidName): distances in the features of the \(reference), generated images against the test split's"
                : "\(metrics.fdName), \(metrics.kidName): not computed (the \(reference) reads \(dimensions(metrics.classifier.inputShape)) images, "
                  + "these are \(dimensions(shape)); train one on them with fusion reference train --images and set data.reference)",
            readsLabels
                ? "t2i_accuracy: the reference classifier's class agrees with the prompt's label"
                : "t2i_accuracy: not computed (it needs labelled images whose data.classes are the reference classifier's classes)",
            scoresCaptions
                ? "caption_accuracy: the greedy caption names the image's class (\(data.classNames.count) classes)"
                : "caption_accuracy: not computed (it needs labels and data.classes)",
            scoresCaptions
                ? "qa_accuracy: templated questions about each test image (its class\(data.classNames == FashionMNIST.classNames ? ", brightness, shape and size" : "")), exact answers; "
                  + "fewshot_accuracy_kK: its class named after K labelled examples in context"
                : "qa_accuracy, fewshot_accuracy_kK: not computed (they need labels and data.classes)",
        ].joined(separator: "; ")
    }
}
