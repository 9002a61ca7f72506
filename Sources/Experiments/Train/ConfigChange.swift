// A config key whose value differs between a run's checkpoint and the command that resumes it. A resumed
// run must be the run it continues, so every change is refused unless the user names it with
// `--allow-change KEY` (e.g. a lower train.learning_rate after a divergence); an allowed change is
// recorded in the log's `config_history`, so the run stays fully described by its configs and steps.
struct ConfigChange: Equatable {
    let key: String, old: String, new: String

    /// The leaves that differ between `saved` (the checkpoint's config) and `current`, in `current`'s order;
    /// a key present on one side only shows "(absent)" on the other. A key the checkpoint lacks and that
    /// `current` holds at its value in `defaults` is no change: it was added to Fusion after the checkpoint
    /// was written, and a new key's default is the behaviour before it (data.images = fashion-mnist).
    static func between(saved: String, current: String, defaults: String? = nil) throws -> [ConfigChange] {
        let before = try ConfigLoader.leaves(of: saved, source: "the checkpoint's config")
        let after = try ConfigLoader.leaves(of: current, source: "the resolved config")
        let oldValues = Dictionary(before, uniquingKeysWith: { first, _ in first })
        let defaultValues = Dictionary(try defaults.map { try ConfigLoader.leaves(of: $0, source: "the defaults") } ?? [],
                                       uniquingKeysWith: { first, _ in first })
        let newKeys = Set(after.map(\.key))
        var changes = after.compactMap { leaf -> ConfigChange? in
            guard let old = oldValues[leaf.key] else {
                return defaultValues[leaf.key] == leaf.value ? nil : ConfigChange(key: leaf.key, old: "(absent)", new: leaf.value)
            }
            return old == leaf.value ? nil : ConfigChange(key: leaf.key, old: old, new: leaf.value)
        }
        changes += before.filter { !newKeys.contains($0.key) }.map { ConfigChange(key: $0.key, old: $0.value, new: "(absent)") }
        return changes
    }

    /// Refuses `changes` not named in `allowed`, listing each with the flag that would allow it.
    static func check(_ changes: [ConfigChange], allowed: [String], checkpoint: String) throws {
        let refused = changes.filter { !allowed.contains($0.key) }
        guard !refused.isEmpty else { return }
        let lines = refused.map { "  \($0.key): \($0.old) in the checkpoint, \($0.new) now" }
        throw RunFailure(description: "--resume: the config differs from the one \(checkpoint) was trained with:\n"
                         + lines.joined(separator: "\n")
                         + "\nResume with the same config and overrides, or allow the change explicitly (it is recorded in the log): "
                         + refused.map { "--allow-change \($0.key)" }.joined(separator: " "))
    }
}
