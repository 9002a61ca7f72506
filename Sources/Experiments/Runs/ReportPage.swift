// `fusion report`'s page for a browser: report.html, one self-contained file (styles, plots as inline
// SVG, every image embedded as a data: URI), so it can be mailed or committed as it is. It shows what
// report.md shows — the runs' table and the guidance curves — and adds the training loss of every run
// over its steps, the final FD against counted FLOPs (log-log, one colour a recipe), and each run's last
// samples, every image large enough to see and labelled with the caption (or class) it was prompted with.
import Foundation
import Fusion

enum ReportPage {
    /// What the page shows of one run beyond its table row.
    /// Generated images as bytes [N, C, S, S], each with the prompt (or class) it was generated from.
    struct Samples {
        let bytes: [UInt8]
        let shape: [Int]
        let captions: [String]
    }

    struct RunExtras {
        /// (step, loss) of train/loss.
        let loss: [(Int64, Double)]
        /// The last samples, if the run logged any.
        let samples: Samples?
    }

    static let recipeColours = ["chameleon": "#1f77b4", "showo": "#d62728", "transfusion": "#2ca02c"]

    static func render(_ rows: [Report.Row], extras: [RunExtras], source: String, commit: String) throws -> String {
        var body = ["<h1>Fusion report</h1>",
                    "<p>Results: <code>\(escape(source))</code> (git \(escape(commit))), \(rows.count) run(s).</p>",
                    table(rows)]
        let curves = rows.compactMap { row in row.guidance.map { (row.run, $0) } }
        if !curves.isEmpty {
            body.append("<h2>FD and t2i over guidance</h2><p>Last evaluation; s as in (1 + s)·c − s·u, so w = 1 + s in the papers' u + w·(c − u).</p>")
            var lines = ["<table><tr><th>run</th><th>best FD (s)</th><th>FD / t2i at each s</th></tr>"]
            for (run, curve) in curves {
                let best = curve.best.map { "\(Report.number($0.fd)) (\(Report.number($0.scale)))" } ?? "–"
                let all = curve.points.map { "s \(Report.number($0.scale)): \(Report.number($0.fd)) / \(Report.number($0.t2i))" }
                lines.append("<tr><td>\(escape(run))</td><td>\(best)</td><td>\(all.joined(separator: "; "))</td></tr>")
            }
            body.append(lines.joined(separator: "\n") + "</table>")
        }
        let lossSeries = zip(rows, extras).filter { !$0.1.loss.isEmpty }
            .map { (name: $0.0.run, colour: recipeColours[$0.0.recipe] ?? "#555", points: $0.1.loss.map { (Double($0.0), $0.1) }) }
        if !lossSeries.isEmpty {
            let legend = Array(Set(rows.map(\.recipe))).sorted().map { ($0, recipeColours[$0] ?? "#555") }
            body.append("<h2>Training loss</h2><p>Every run, coloured by recipe.</p>"
                        + plot(lossSeries, legend: legend, xLabel: "step", yLabel: "loss", logarithmic: false, markers: false))
        }
        let fdPoints = rows.filter { ($0.metrics["fd_fmnist"] ?? .nan).isFinite && $0.flopsCounted > 0 && $0.metrics["fd_fmnist"]! > 0 }
        if fdPoints.count >= 2 {
            let recipes = Array(Set(fdPoints.map(\.recipe))).sorted()
            let series = recipes.map { recipe in
                (name: recipe, colour: recipeColours[recipe] ?? "#555",
                 points: fdPoints.filter { $0.recipe == recipe }.map { ($0.flopsCounted, $0.metrics["fd_fmnist"]!) }.sorted { $0.0 < $1.0 })
            }
            body.append("<h2>Final FD against training FLOPs</h2>"
                        + plot(series, legend: series.map { ($0.name, $0.colour) }, xLabel: "FLOPs counted", yLabel: "fd_fmnist",
                               logarithmic: true, markers: true))
        }
        for (row, extra) in zip(rows, extras) {
            guard let samples = extra.samples else { continue }
            body.append("<h2>\(escape(row.run)): samples</h2>" + (try gallery(samples)))
        }
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Fusion report</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
            table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
            th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
            th:first-child, td:first-child, td:nth-child(2) { text-align: left; }
            figure { display: inline-block; margin: 0.3em; text-align: center; }
            figure img { width: 84px; height: 84px; image-rendering: pixelated; background: #000; }
            figcaption { font-size: 0.75em; max-width: 84px; }
            svg text { font-size: 12px; fill: #333; }
            </style></head>
            <body>
            \(body.joined(separator: "\n"))
            </body></html>

            """
    }

    static func table(_ rows: [Report.Row]) -> String {
        let columns = Report.metricColumns(rows)
        var lines = ["<table><tr><th>run</th><th>recipe</th><th>params (non-emb.)</th><th>step</th><th>FLOPs counted</th><th>FLOPs 6ND</th>"
                     + columns.map { "<th>\($0)</th>" }.joined() + "</tr>"]
        for row in rows {
            lines.append("<tr><td>\(escape(row.run))</td><td>\(escape(row.recipe))</td><td>\(row.parameters) (\(row.nonEmbedding))</td>"
                         + "<td>\(row.step)</td><td>\(Report.number(row.flopsCounted))</td><td>\(Report.number(row.flops6ND))</td>"
                         + columns.map { "<td>\(Report.number(row.metrics[$0]))</td>" }.joined() + "</tr>")
        }
        return lines.joined(separator: "\n") + "</table>"
    }

    /// One line a series (its points marked when asked), in an SVG of 640 × 360; log10 axes when asked.
    static func plot(_ series: [(name: String, colour: String, points: [(Double, Double)])], legend: [(String, String)],
                     xLabel: String, yLabel: String, logarithmic: Bool, markers: Bool) -> String {
        let transform: (Double) -> Double = logarithmic ? { log10($0) } : { $0 }
        let all = series.flatMap(\.points).map { (transform($0.0), transform($0.1)) }.filter { $0.0.isFinite && $0.1.isFinite }
        guard let xMin = all.map(\.0).min(), let xMax = all.map(\.0).max(), let yMin = all.map(\.1).min(), let yMax = all.map(\.1).max() else { return "" }
        let (width, height, left, bottom, top, right) = (640.0, 360.0, 60.0, 40.0, 10.0, 150.0)
        func x(_ value: Double) -> Double { left + (transform(value) - xMin) / max(xMax - xMin, 1e-12) * (width - left - right) }
        func y(_ value: Double) -> Double { height - bottom - (transform(value) - yMin) / max(yMax - yMin, 1e-12) * (height - bottom - top) }
        func tick(_ value: Double) -> String { Report.number(logarithmic ? pow(10, value) : value) }
        var svg = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(escape(yLabel)) against \(escape(xLabel))\">",
                   "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(width - left - right)\" height=\"\(height - bottom - top)\" fill=\"none\" stroke=\"#999\"/>",
                   "<text x=\"\(left)\" y=\"\(height - 22)\">\(tick(xMin))</text>",
                   "<text x=\"\(width - right)\" y=\"\(height - 22)\" text-anchor=\"end\">\(tick(xMax))</text>",
                   "<text x=\"\((width - right + left) / 2)\" y=\"\(height - 6)\" text-anchor=\"middle\">\(escape(xLabel))\(logarithmic ? " (log)" : "")</text>",
                   "<text x=\"\(left - 4)\" y=\"\(height - bottom)\" text-anchor=\"end\">\(tick(yMin))</text>",
                   "<text x=\"\(left - 4)\" y=\"\(top + 10)\" text-anchor=\"end\">\(tick(yMax))</text>",
                   "<text x=\"12\" y=\"\((height - bottom + top) / 2)\" transform=\"rotate(-90 12 \((height - bottom + top) / 2))\" text-anchor=\"middle\">\(escape(yLabel))\(logarithmic ? " (log)" : "")</text>"]
        for line in series {
            let points = line.points.filter { transform($0.0).isFinite && transform($0.1).isFinite }
            let coordinates = points.map { (String(format: "%.1f", x($0.0)), String(format: "%.1f", y($0.1))) }
            svg.append("<polyline fill=\"none\" stroke=\"\(line.colour)\" stroke-width=\"1.5\" points=\"\(coordinates.map { "\($0.0),\($0.1)" }.joined(separator: " "))\"/>")
            if markers {
                svg += coordinates.map { "<circle cx=\"\($0.0)\" cy=\"\($0.1)\" r=\"3\" fill=\"\(line.colour)\"/>" }
            }
        }
        for (index, (name, colour)) in legend.enumerated() {
            svg.append("<text x=\"\(width - right + 8)\" y=\"\(top + 14 + 16 * Double(index))\" style=\"fill: \(colour)\">\(escape(name))</text>")
        }
        return svg.joined(separator: "\n") + "</svg>"
    }

    /// Each sample as an embedded PNG with the prompt (or class) it was generated from.
    static func gallery(_ samples: Samples) throws -> String {
        let (n, c, h, w) = (samples.shape[0], samples.shape[1], samples.shape[2], samples.shape[3])
        var figures: [String] = []
        for i in 0..<n {
            let one = Tensor(samples.bytes[(i * c * h * w)..<((i + 1) * c * h * w)].map { Float($0) / 255 }, shape: [1, c, h, w])
            let png = try PNG.encode(PNG.grid(one, columns: 1, padding: 0))
            let name = i < samples.captions.count ? samples.captions[i] : "sample \(i + 1)"
            figures.append("<figure><img src=\"data:image/png;base64,\(png.base64EncodedString())\" alt=\"\(escape(name))\">"
                           + "<figcaption>\(escape(name))</figcaption></figure>")
        }
        return "<div>" + figures.joined() + "</div>"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
