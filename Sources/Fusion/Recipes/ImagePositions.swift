// Where M-RoPE (`recipe.model.image_rope: 2d`, `RotaryAngles`) finds an image's rows and columns: every
// image whose positions form a square grid, row-major (codes h×w, latent patches (h/p)×(w/p), pixel
// tokens of a connector that keeps the patch grid) is rotated by its grid; a resampler's or Q-Former's
// queries, which have no grid, keep their 1-D positions. With `1d` there are no axes at all.

extension FusionModel {
    /// The grid side of an image's positions in the sequence, if they form one.
    func gridSide(of image: PackedImage) -> Int? {
        if image.readsPixels && !(understanding?.connector.keepsGrid ?? false) { return nil }
        let side = Int(Double(image.count).squareRoot().rounded())
        return side > 0 && side * side == image.count ? side : nil
    }

    /// M-RoPE axes of a packed batch; nil with 1-D image positions.
    func positionAxes(_ batch: PackedBatch) -> PositionAxes? {
        guard config.model.imageRope == .twoD else { return nil }
        var axes = PositionAxes(positions: batch.positions)
        for image in batch.images {
            guard let side = gridSide(of: image) else { continue }
            let first = image.row * batch.length + image.start
            axes.markImage(first: first, count: image.count, side: side, start: batch.positions[first])
        }
        return axes
    }

    /// M-RoPE axes of image positions `tokens` (of the h×w generation grid) in every row of a sampler, the
    /// image of row r starting at 1-D position starts[r]; nil with 1-D image positions.
    func generationAxes(starts: [Int32], tokens: Range<Int>) -> PositionAxes? {
        guard config.model.imageRope == .twoD else { return nil }
        let side = config.imageObjective.usesCodes ? config.imageGrid : config.imageGrid / config.patchSize
        var axes = PositionAxes(positions: [Int32](repeating: 0, count: starts.count * tokens.count))
        for (row, start) in starts.enumerated() {
            axes.markImage(first: row * tokens.count, count: tokens.count, side: side, start: start, offset: tokens.lowerBound)
        }
        return axes
    }
}
