// The threads every parallel pass runs on: the calling thread plus `Parallel.threadCount − 1` workers.
//
// Why not DispatchQueue.concurrentPerform: between two passes its worker goes to sleep at once, and
// waking it costs about 10 µs (measured here, with 50 µs of serial work between calls), during which
// the calling thread runs its half alone and then waits. A training step makes hundreds of such calls.
// These workers instead keep watching for work for a short while (`spinChecks`, measured 47–55 µs)
// before they sleep, as OpenMP runtimes do, so back-to-back passes start on both cores at once; a
// worker that is asleep is woken with a semaphore.
//
// Each worker has a state: idle, invited (a job is waiting for it) or running. The caller invites the
// workers, takes chunks itself, then withdraws every invitation not yet taken up and waits for the
// running workers to go idle. So no worker touches a job after `run` returns, and a worker that
// wakes late simply finds nothing to do. Chunks are claimed from one atomic counter, so a worker that
// has lost its core to another process leaves its share to the others.
import Foundation
import Synchronization

final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// Checks of its state a worker makes before it goes to sleep.
    static let spinChecks = 100_000

    private static let idle = 0, invited = 1, running = 2

    private final class Worker: @unchecked Sendable {
        let state = Atomic<Int>(WorkerPool.idle)
        let sleeping = Atomic<Bool>(false)
        let wakeUp = DispatchSemaphore(value: 0)
    }

    private var workers: [Worker] = []
    /// Held by the thread whose job the pool is running; a second caller (or a pass started from inside
    /// a job) runs its chunks on its own thread instead of waiting.
    private let inUse = Atomic<Bool>(false)
    // The current job, written by the caller before it invites anyone.
    private var body: ((Int) -> Void)?
    private var iterations = 0
    private let nextChunk = Atomic<Int>(0)
    /// Whether the current job has more threads than the machine has cores.
    private let oversubscribed = Atomic<Bool>(false)
    private static let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body(i)` for every i in 0..<iterations, on up to `threads` threads (the caller included),
    /// and returns when all calls have returned.
    func run(iterations: Int, threads: Int, _ body: (Int) -> Void) {
        let helpers = min(threads, iterations) - 1
        guard helpers > 0, inUse.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for i in 0..<iterations { body(i) }
            return
        }
        defer { inUse.store(false, ordering: .releasing) }
        while workers.count < helpers { startWorker() }
        withoutActuallyEscaping(body) { body in
            self.body = body
            self.iterations = iterations
            nextChunk.store(0, ordering: .relaxed)
            oversubscribed.store(helpers + 1 > Self.cores, ordering: .relaxed)
            for worker in workers.prefix(helpers) {
                worker.state.store(Self.invited, ordering: .sequentiallyConsistent)
                if worker.sleeping.exchange(false, ordering: .sequentiallyConsistent) { worker.wakeUp.signal() }
            }
            runChunks()
            for worker in workers.prefix(helpers) {
                // Withdraw an invitation not taken up; wait for a worker that is still running chunks.
                if worker.state.compareExchange(expected: Self.invited, desired: Self.idle,
                                                successOrdering: .relaxed, failureOrdering: .acquiring).exchanged { continue }
                var checks = 0
                while worker.state.load(ordering: .acquiring) != Self.idle { checks += 1; yieldIfOversubscribed(checks) }
            }
            self.body = nil
        }
    }

    /// With more threads than cores (FUSION_THREADS set high), a spinning thread can hold the core that
    /// the thread it waits for needs; then every 1,024th check gives the core away. Not otherwise:
    /// `sched_yield` costs several µs on this machine, as much as a typical wait for the other core.
    @inline(__always)
    private func yieldIfOversubscribed(_ checks: Int) {
        if checks & 1023 == 0, oversubscribed.load(ordering: .relaxed) { sched_yield() }
    }

    private func runChunks() {
        while true {
            let i = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
            guard i < iterations else { return }
            body!(i)
        }
    }

    private func startWorker() {
        let worker = Worker()
        workers.append(worker)
        let thread = Thread { [unowned self] in self.serve(worker) }
        thread.name = "fusion-worker-\(workers.count)"
        thread.start()
    }

    private func serve(_ worker: Worker) {
        while true {
            var checks = 0
            while worker.state.load(ordering: .acquiring) != Self.invited {
                checks += 1
                yieldIfOversubscribed(checks)
                guard checks >= Self.spinChecks else { continue }
                // Announce the sleep, then look once more: the caller stores the invitation before it
                // reads `sleeping`, this thread stores `sleeping` before it reads the state, so one of
                // the two sees the other (no lost wake-up; a spare signal only costs one extra check).
                worker.sleeping.store(true, ordering: .sequentiallyConsistent)
                if worker.state.load(ordering: .sequentiallyConsistent) != Self.invited { worker.wakeUp.wait() }
                worker.sleeping.store(false, ordering: .relaxed)
                checks = 0
            }
            guard worker.state.compareExchange(expected: Self.invited, desired: Self.running,
                                               ordering: .acquiringAndReleasing).exchanged else { continue }
            runChunks()
            worker.state.store(Self.idle, ordering: .releasing)
        }
    }
}
