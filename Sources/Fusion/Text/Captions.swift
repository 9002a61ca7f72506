// Captions: deterministic captions of Fashion-MNIST images (Xiao et al. 2017, arXiv 1708.07747) from
// their class and three properties measured from their pixels, so that text conditioning carries more
// than a class id (DESIGN.md, "Data"): "a large dark coat", "a photo of a narrow light sneaker",
// "an ankle boot, small, dark", "a picture of a top that is wide and light".
//
// Properties of an image (values in [0, 1]; "ink" = pixels brighter than 0.1):
//     brightness  mean value of the ink pixels                → "dark" (low)   / —  / "light" (high)
//     aspect      ink bounding-box width / height              → "narrow" (low) / —  / "wide" (high)
//     area        number of ink pixels                         → "small" (low)  / —  / "large" (high)
// Each is cut at its class's tertiles, so "dark" means dark *for a coat* (a class-wide cut would call
// every sandal small and say nothing the class does not); the middle third gets no word, so the
// caption of a median image is the bare class prompt ("a coat"). Words come in the order size,
// shape, brightness ("a large wide dark coat").
//
// The tertiles are fixed constants, measured once on the 60,000 training images at 28×28 (numpy,
// float64, pixel = byte / 255; np.quantile(values of one class, [1/3, 2/3]), default linear
// interpolation); brightness cuts rounded to 4 decimals, aspect cuts written as the exact float64
// ratios they fell on (e.g. 22/28), area cuts are whole pixel counts. Padding does not change any
// property, so 28×28 and 32×32 images get the same caption. Captions depend only on this file: the
// same on every machine.
//
// Phrasings (P = 4) and noun forms ("T-shirt/top" is "t-shirt" or "top"; others have one form) are
// picked by `variant`, which `variant(seed:index:)` draws from Philox for a dataset index.

/// Deterministic captions of Fashion-MNIST images, and the class a caption names.
public enum Captions {
    /// Fashion-MNIST's class names, in label order (the same list as the data loader's).
    public static let classNames = ["T-shirt/top", "trouser", "pullover", "dress", "coat",
                                    "sandal", "shirt", "sneaker", "bag", "ankle boot"]

    /// The nouns a caption uses for each class; the first is the canonical one (classPrompt).
    public static let nounForms: [[String]] = [["t-shirt", "top"], ["pair of trousers"], ["pullover"], ["dress"],
                                               ["coat"], ["sandal"], ["shirt"], ["sneaker"], ["bag"],
                                               ["ankle boot"]]
    /// Pixels brighter than this are ink.
    public static let inkThreshold: Float = 0.1
    /// The number of sentence patterns.
    public static let phrasingCount = 4
    /// Distinct variants: every phrasing with every noun form of the class with the most forms.
    public static let variantCount = phrasingCount * 2

    /// Where a property falls among the training images of its class.
    public enum Level: Int, Sendable { case low, middle, high }

    /// What `caption` measures on an image.
    public struct Properties: Equatable, Sendable {
        /// Mean value of the ink pixels (0 when there is no ink).
        public var brightness: Double
        /// Ink bounding box, in pixels (0 × 0 when there is no ink).
        public var inkWidth: Int, inkHeight: Int
        /// Number of ink pixels.
        public var inkArea: Int
        /// inkWidth / inkHeight (0 when there is no ink).
        public var aspect: Double { inkHeight > 0 ? Double(inkWidth) / Double(inkHeight) : 0 }

        public init(brightness: Double, inkWidth: Int, inkHeight: Int, inkArea: Int) {
            self.brightness = brightness
            self.inkWidth = inkWidth
            self.inkHeight = inkHeight
            self.inkArea = inkArea
        }
    }

    /// Per-class tertile cuts (low, high) of each property; see the header for how they were measured.
    struct Cuts {
        let brightness: (Double, Double), aspect: (Double, Double), area: (Int, Int)
    }
    static let cuts: [Cuts] = [
        Cuts(brightness: (0.5226, 0.7259), aspect: (0.7777777777777778, 0.8214285714285714), area: (405, 444)),
        Cuts(brightness: (0.6312, 0.7515), aspect: (0.39285714285714285, 0.42857142857142855), area: (239, 261)),
        Cuts(brightness: (0.5267, 0.7420), aspect: (0.7374169040835692, 0.7857142857142857), area: (452, 504)),
        Cuts(brightness: (0.5978, 0.7610), aspect: (0.4642857142857143, 0.5714285714285714), area: (277, 334)),
        Cuts(brightness: (0.6555, 0.7704), aspect: (0.7142857142857143, 0.75), area: (426, 472)),
        Cuts(brightness: (0.4714, 0.5692), aspect: (1.4736842105263157, 2.3333333333333335), area: (162, 223)),
        Cuts(brightness: (0.4623, 0.6886), aspect: (0.7407407407407407, 0.7857142857142857), area: (431, 488)),
        Cuts(brightness: (0.5344, 0.6335), aspect: (2.0, 2.3333333333333335), area: (205, 239)),
        Cuts(brightness: (0.6261, 0.7294), aspect: (0.9285714285714286, 1.3333333333333333), area: (382, 456)),
        Cuts(brightness: (0.6578, 0.7384), aspect: (1.2173913043478262, 1.4736842105263157), area: (313, 365)),
    ]

    // MARK: Measuring

    /// The properties of one side × side grey image (row-major, values in [0, 1]).
    public static func properties(of image: UnsafePointer<Float>, side: Int) -> Properties {
        var area = 0, sum = 0.0
        var top = side, bottom = -1, leftmost = side, rightmost = -1
        for row in 0..<side {
            for column in 0..<side {
                let value = image[row * side + column]
                guard value > inkThreshold else { continue }
                area += 1
                sum += Double(value)
                top = min(top, row); bottom = max(bottom, row)
                leftmost = min(leftmost, column); rightmost = max(rightmost, column)
            }
        }
        guard area > 0 else { return Properties(brightness: 0, inkWidth: 0, inkHeight: 0, inkArea: 0) }
        return Properties(brightness: sum / Double(area), inkWidth: rightmost - leftmost + 1,
                          inkHeight: bottom - top + 1, inkArea: area)
    }

    /// The properties of one side × side grey image given as an array.
    public static func properties(of image: [Float], side: Int) -> Properties {
        precondition(image.count == side * side, "Captions.properties: \(image.count) values for a \(side)×\(side) image")
        return image.withUnsafeBufferPointer { properties(of: $0.baseAddress!, side: side) }
    }

    /// The levels (brightness, aspect, area) of `properties` among the training images of class `label`.
    public static func levels(of properties: Properties, label: Int) -> (brightness: Level, aspect: Level, area: Level) {
        let cut = cuts[checked(label)]
        func level<T: Comparable>(_ value: T, _ bounds: (T, T)) -> Level {
            value < bounds.0 ? .low : value > bounds.1 ? .high : .middle
        }
        return (level(properties.brightness, cut.brightness), level(properties.aspect, cut.aspect),
                level(properties.inkArea, cut.area))
    }

    /// The adjectives for `properties` in caption order (size, shape, brightness); empty for a median image.
    public static func adjectives(for properties: Properties, label: Int) -> [String] {
        let (brightness, aspect, area) = levels(of: properties, label: label)
        func word(_ level: Level, _ low: String, _ high: String) -> String? {
            level == .low ? low : level == .high ? high : nil
        }
        return [word(area, "small", "large"), word(aspect, "narrow", "wide"), word(brightness, "dark", "light")]
            .compactMap { $0 }
    }

    // MARK: Writing

    /// The caption of a side × side image of class `label` (0…9) in phrasing `variant` (any Int ≥ 0;
    /// taken modulo the phrasings and noun forms).
    public static func caption(for image: UnsafePointer<Float>, side: Int = 32, label: Int, variant: Int) -> String {
        caption(label: label, adjectives: adjectives(for: properties(of: image, side: side), label: label),
                variant: variant)
    }

    /// The caption of an image given as an array of side × side values.
    public static func caption(for image: [Float], side: Int = 32, label: Int, variant: Int) -> String {
        caption(label: label, adjectives: adjectives(for: properties(of: image, side: side), label: label),
                variant: variant)
    }

    /// The caption of class `label` with these adjectives, in phrasing `variant`:
    ///     0  "a large wide dark coat"
    ///     1  "a photo of a large wide dark coat"
    ///     2  "a coat, large, wide, dark"
    ///     3  "a picture of a coat that is large, wide and dark"
    /// With no adjectives, 0 and 2 are "a coat", 1 "a photo of a coat", 3 "a picture of a coat".
    public static func caption(label: Int, adjectives: [String], variant: Int) -> String {
        precondition(variant >= 0, "Captions.caption: variant \(variant) must be ≥ 0")
        let forms = nounForms[checked(label)]
        let noun = forms[(variant / phrasingCount) % forms.count]
        switch variant % phrasingCount {
        case 0: return withArticle((adjectives + [noun]).joined(separator: " "))
        case 1: return "a photo of " + withArticle((adjectives + [noun]).joined(separator: " "))
        case 2: return ([withArticle(noun)] + adjectives).joined(separator: ", ")
        default:
            let picture = "a picture of " + withArticle(noun)
            guard let last = adjectives.last else { return picture }
            let list = adjectives.count == 1 ? last : adjectives.dropLast().joined(separator: ", ") + " and " + last
            return picture + " that is " + list
        }
    }

    /// The canonical prompt for class `label` ("a coat", "an ankle boot", "a t-shirt"): what variant 0
    /// captions a median image of the class, used to prompt text-to-image evaluation.
    public static func classPrompt(label: Int) -> String {
        caption(label: label, adjectives: [], variant: 0)
    }

    /// The phrasing of dataset item `index` under `seed`: uniform in 0..<variantCount, drawn from Philox
    /// stream `index` of the seed, so it does not depend on the order items are visited in.
    public static func variant(seed: UInt64, index: Int) -> Int {
        var generator = RandomGenerator(seed: seed).split(key: "captions").stream(index)
        return generator.nextInt(below: variantCount)
    }

    /// "a" or "an" before `phrase` (by its first letter: "an ankle boot", "a top").
    public static func withArticle(_ phrase: String) -> String {
        ("aeiou".contains(phrase.first ?? "x") ? "an " : "a ") + phrase
    }

    private static func checked(_ label: Int) -> Int {
        precondition(classNames.indices.contains(label), "Captions: label \(label) is not a Fashion-MNIST class 0…9")
        return label
    }

    // MARK: Reading

    /// Words that name each class, in any caption (ours or a model's): nouns, plurals, synonyms.
    /// Matched as whole words, so "shirt" never matches inside "t-shirt", nor "top" inside "stop";
    /// "boot" and "ankle" alone name the ankle boot, the only boot among the classes.
    static let classWords: [String: Int] = {
        let lists: [[String]] = [
            ["t-shirt", "t-shirts", "tshirt", "tshirts", "tee", "tees", "top", "tops"],
            ["trouser", "trousers", "pants"],
            ["pullover", "pullovers", "sweater", "sweaters", "jumper", "jumpers"],
            ["dress", "dresses"],
            ["coat", "coats"],
            ["sandal", "sandals"],
            ["shirt", "shirts"],
            ["sneaker", "sneakers"],
            ["bag", "bags"],
            ["ankle", "boot", "boots"],
        ]
        var table: [String: Int] = [:]
        for (label, words) in lists.enumerated() { for word in words { table[word] = label } }
        return table
    }()

    /// The words of `text`, lower-cased: runs of letters, digits and hyphens ("T-shirt, 2 tops" →
    /// "t-shirt", "2", "tops"). Class names are matched against these, so never inside a word.
    public static func words(in text: String) -> [Substring] {
        text.lowercased().split { !($0.isLetter || $0.isNumber || $0 == "-") }
    }

    /// The class a caption names, or nil when it names none or more than one (ambiguous: counted as
    /// wrong by caption_accuracy). Case-insensitive; words are runs of letters, digits and hyphens.
    public static func className(in caption: String) -> Int? {
        var found: Int? = nil
        let words = Self.words(in: caption)
        for word in words {
            guard let label = classWords[String(word)] else { continue }
            if let earlier = found, earlier != label { return nil }
            found = label
        }
        return found
    }
}
