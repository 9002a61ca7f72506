// What the recipes ask of an image autoencoder, as two small protocols, so that a recipe's tests can
// hand it a stand-in and a later tokenizer (another architecture, a pretrained one) can slot in.
// Chameleon and Show-o use an `ImageTokenizer` (discrete codes in the shared vocabulary); Transfusion
// uses an `ImageLatentCodec` (continuous latents it diffuses). ConvAutoencoder is both, by kind.
//
// Shapes: N images, Cimg channels, S side, h = w the grid side, c latent channels.

public protocol ImageTokenizer: AnyObject {
    /// h = w of the code grid.
    var gridSide: Int { get }
    /// The number of distinct codes; every code lies in 0..<codebookSize.
    var codebookSize: Int { get }
    /// images [N, Cimg, S, S] in [0, 1] → N rows of h·w codes, row-major. Deterministic.
    func encodeToCodes(_ images: Tensor) -> [[Int32]]
    /// N rows of h·w codes → images [N, Cimg, S, S] in [0, 1].
    func decodeCodes(_ codes: [[Int32]]) -> Tensor
}

public protocol ImageLatentCodec: AnyObject {
    /// h = w of the latent grid.
    var gridSide: Int { get }
    /// c.
    var latentChannels: Int { get }
    /// images [N, Cimg, S, S] in [0, 1] → latents [N, c, h, w], about unit variance. Deterministic.
    func encodeToLatents(_ images: Tensor) -> Tensor
    /// latents [N, c, h, w] → images [N, Cimg, S, S] in [0, 1].
    func decodeLatents(_ latents: Tensor) -> Tensor
}

extension ConvAutoencoder: ImageTokenizer, ImageLatentCodec {}
