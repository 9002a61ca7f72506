// A run's image metrics over classifier-free guidance at its last evaluation (eval_guidance/ in its
// log: one row per guidance scale), and the scale with the lowest FD: papers tune guidance per model, so
// `fusion report` shows each run's curve and best scale, and `fusion analyze` fits and compares the
// recipes at their best scales beside the shared one (fd_fmnist_best_guidance).
import Fusion

struct GuidanceCurve {
    struct Point { let scale: Double, fd: Double, t2i: Double? }
    /// Ascending in scale.
    let points: [Point]

    /// The curve of `run` (a run group of a validated results file), or nil when it logged none.
    init?(run: HDF5Group) throws {
        guard try run.exists("eval_guidance/step"), try run.exists("eval_guidance/guidance_scale"), try run.exists("eval_guidance/fd_fmnist") else { return nil }
        let group = try run.group("eval_guidance")
        let steps = try group.dataset("step").read(as: Int64.self)
        guard let last = steps.last else { return nil }
        let scales = try group.dataset("guidance_scale").read(as: Double.self), fd = try group.dataset("fd_fmnist").read(as: Double.self)
        let t2i = try group.exists("t2i_accuracy") ? try group.dataset("t2i_accuracy").read(as: Double.self) : []
        points = steps.indices.filter { steps[$0] == last }
            .map { Point(scale: scales[$0], fd: fd[$0], t2i: $0 < t2i.count ? t2i[$0] : nil) }
            .sorted { $0.scale < $1.scale }
        guard !points.isEmpty else { return nil }
    }

    /// The point with the lowest finite FD.
    var best: Point? { points.filter { $0.fd.isFinite }.min { $0.fd < $1.fd } }
}
