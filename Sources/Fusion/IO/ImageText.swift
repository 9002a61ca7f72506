// Text drawn into an Image8 with the 5×7 bitmap font (Font5x7): the labels under the images of a
// sample grid (PNG.grid). Characters outside printable ASCII are drawn as '?'.
extension Image8 {
    /// The horizontal and vertical advance of one character: the glyph and one pixel of space.
    public static let characterAdvance = Font5x7.width + 1
    public static let lineAdvance = Font5x7.height + 1

    /// Draws `text` on one line with its top-left corner at (x, y), each lit font pixel set to `value` in
    /// every channel; what falls outside the image is clipped.
    public mutating func draw(_ text: String, x: Int, y: Int, value: UInt8) {
        for (index, character) in text.unicodeScalars.enumerated() {
            let code = (32...126).contains(character.value) ? Int(character.value) : Int(("?" as Unicode.Scalar).value)
            let glyph = Font5x7.glyphs[code - 32], left = x + index * Self.characterAdvance
            for row in 0..<Font5x7.height where y + row >= 0 && y + row < height {
                for column in 0..<Font5x7.width where glyph[row] & (0x80 >> column) != 0 && left + column >= 0 && left + column < width {
                    for channel in 0..<channels { self[x: left + column, y: y + row, channel: channel] = value }
                }
            }
        }
    }

    /// `text` broken into at most `lines` lines of at most `width` characters: at spaces where it can be,
    /// inside a word longer than a line where it must; text beyond the last line is cut, ending in "…"
    /// drawn as "..".
    public static func wrap(_ text: String, width: Int, lines: Int) -> [String] {
        precondition(width >= 1 && lines >= 1, "Image8.wrap: width \(width) and lines \(lines) must be ≥ 1")
        var result: [String] = [], current = ""
        for word in text.split(separator: " ") {
            var word = Substring(word)
            while !word.isEmpty {
                let room = current.isEmpty ? width : width - current.count - 1
                if word.count <= room {
                    current += (current.isEmpty ? "" : " ") + word
                    word = ""
                } else if current.isEmpty {
                    result.append(String(word.prefix(width)))
                    word = word.dropFirst(width)
                } else {
                    result.append(current)
                    current = ""
                }
            }
        }
        if !current.isEmpty { result.append(current) }
        guard result.count > lines else { return result }
        let last = result[lines - 1]
        return Array(result.prefix(lines - 1)) + [String(last.prefix(max(width - 2, 0))) + ".."]
    }
}
