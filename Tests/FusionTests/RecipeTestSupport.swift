// Shared fixtures for the recipe tests: a small vocabulary and tiny model configurations.
@testable import Fusion

/// 20 text ids (the last 8 special), plus `imageCodes` codes.
func testVocabulary(imageCodes: Int) -> Vocabulary {
    Vocabulary(textSize: 20, imageCodes: imageCodes, bos: 12, eos: 13, pad: 14, boi: 15, eoi: 16, mask: 17, t2i: 18, mmu: 19)
}

/// A recipe preset shrunk to a tiny core (D 8, 2 layers, 2 heads) for tests; `initStd` large enough that
/// finite differences see every path.
func tinyRecipe(_ preset: RecipeConfig, imageGrid: Int = 2, initStd: Float = 0.3) -> RecipeConfig {
    var config = preset
    config.model.width = 8
    config.model.layers = 2
    config.model.heads = 2
    config.model.mlpHidden = 16
    config.model.contextLength = 32
    config.model.initStd = initStd
    config.imageGrid = imageGrid
    config.imageCodes = 6
    config.latentChannels = 2
    return config
}
