// Training batches of images drawn without replacement, in a seeded random order that is drawn again
// each time the set is used up: the autoencoders' and the ViT's data order.
import Fusion

struct ShuffledImages {
    let dataset: ImageDataset
    private var order: [Int]
    private var cursor = 0

    init(_ dataset: ImageDataset, generator: inout RandomGenerator) {
        self.dataset = dataset
        order = generator.permutation(dataset.count)
    }

    /// Fills `batch` [B, C, S, S] with the next B images, calling `each` with every image's index in turn
    /// (before the next is drawn, so a caller's draws from `generator` interleave with the order's).
    mutating func fill(_ batch: Tensor, generator: inout RandomGenerator,
                       each: (_ index: Int, _ generator: inout RandomGenerator) -> Void = { _, _ in }) {
        let imageSize = dataset.channels * dataset.side * dataset.side
        for i in 0..<batch.shape[0] {
            if cursor == order.count { order = generator.permutation(dataset.count); cursor = 0 }
            let index = order[cursor]
            cursor += 1
            (batch.data + i * imageSize).update(from: dataset.images.data + index * imageSize, count: imageSize)
            each(index, &generator)
        }
    }
}
