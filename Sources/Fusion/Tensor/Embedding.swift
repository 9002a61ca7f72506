// Embedding lookup: rows of a table picked by integer ids; its backward adds each row's gradient
// back into the row it came from (a scatter-add).

/// table [V, D], ids (N of them) → [N, D]. Every id must lie in 0..<V.
public func embedding(_ table: Tensor, ids: [Int32]) -> Tensor {
    checkShape(table.rank == 2, "embedding: table \(table.name ?? "") has shape \(table.shape), expected [V, D]")
    let v = table.shape[0], d = table.shape[1]
    for id in ids where id < 0 || Int(id) >= v {
        preconditionFailure("embedding: id \(id) is outside the vocabulary 0..<\(v) of \(table.name ?? "the table")")
    }
    let out = Tensor(uninitializedShape: [ids.count, d])
    ids.withUnsafeBufferPointer { ids in
        for (n, id) in ids.enumerated() { (out.data + n * d).update(from: table.data + Int(id) * d, count: d) }
    }
    return out.recordGraph(inputs: [table]) { _, g in
        let gt = table.gradientBuffer()
        // Serial over tokens: two tokens with the same id add into the same row.
        for (n, id) in ids.enumerated() {
            let row = gt + Int(id) * d, source = g.data + n * d
            for j in 0..<d { row[j] += source[j] }
        }
    }
}
