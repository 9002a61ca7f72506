// One split of the images an experiment trains or evaluates on, wherever they come from: the built-in
// Fashion-MNIST (captions generated from the pixels, DESIGN.md "Data") or a folder of PNG files with a
// JSONL manifest (captions as given; ImageFolder). Everything downstream (the tokenizer's caption
// sample, the autoencoder's codes, the documents, the evaluation) reads images and captions here.
import Fusion

struct ImageDataset {
    /// Where the captions of a split come from.
    enum CaptionSource {
        /// Fashion-MNIST's rules (Captions.caption), phrasing `variant % Captions.variantCount`.
        case generated
        /// One or more captions per image, as the manifest gives them; variant v is `captions[n][v % count]`.
        case given([[String]])
    }

    /// [N, C, S, S] in [0, 1].
    let images: Tensor
    /// The class of each image (nil: the source has no labels).
    let labels: [Int32]?
    let captions: CaptionSource

    var count: Int { images.shape[0] }
    var channels: Int { images.shape[1] }
    var side: Int { images.shape[2] }

    /// Caption `variant` of image `index` (variants beyond the phrasings wrap around).
    func captionText(index: Int, variant: Int) -> String {
        switch captions {
        case .generated:
            let size = side * side
            return withExtendedLifetime(images) {
                Captions.caption(for: images.data + index * size, side: side, label: Int(labels![index]),
                                 variant: variant % Captions.variantCount)
            }
        case .given(let lists):
            let options = lists[index]
            return options[variant % options.count]
        }
    }

    /// The first `count` images (all when there are fewer).
    func prefix(_ count: Int) -> ImageDataset {
        let n = min(count, self.count)
        if n == self.count { return self }
        let captions: CaptionSource
        switch self.captions {
        case .generated: captions = .generated
        case .given(let lists): captions = .given(Array(lists.prefix(n)))
        }
        return ImageDataset(images: images.narrow(axis: 0, start: 0, length: n), labels: labels.map { Array($0.prefix(n)) },
                            captions: captions)
    }

    /// A Fashion-MNIST split as a dataset with generated captions.
    init(_ set: FashionMNIST.Set) {
        self.init(images: set.images, labels: set.labels, captions: .generated)
    }

    init(images: Tensor, labels: [Int32]?, captions: CaptionSource) {
        self.images = images
        self.labels = labels
        self.captions = captions
    }
}
