// Splitting element-wise and row-wise loops over the machine's cores.
//
// The closure runs once per chunk (never per element), on contiguous ranges, so the loops inside stay
// plain pointer loops the compiler vectorises. Small jobs run inline: below ~16K element-wise operations
// a second thread saves less than handing it the work costs (WorkerPool.swift).
import Foundation

public enum Parallel {
    /// Threads for every parallel pass (the caller's included): `FUSION_THREADS` when set, else the cores
    /// this process may use (÷ the ranks of a data-parallel run on this machine). `fusion sweep` sets
    /// it for runs that share the machine.
    nonisolated(unsafe) public static var threadCount = threadCount(environment: ProcessInfo.processInfo.environment,
                                                                     cores: ProcessInfo.processInfo.activeProcessorCount)

    /// The environment variable that sets `threadCount`.
    public static let threadsVariable = "FUSION_THREADS"

    /// `FUSION_THREADS` if it is a positive integer, else the cores shared among the ranks of a
    /// data-parallel run on this machine (all of them without a launcher); a bad value is reported on
    /// stderr, not fatal.
    static func threadCount(environment: [String: String], cores: Int) -> Int {
        let share = max(1, cores / Communicator.localRanks(environment: environment))
        guard let text = environment[threadsVariable] else { return share }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= 1 else {
            FileHandle.standardError.write(Data("fusion: \(threadsVariable)=\(text) is not a positive whole number; using \(share) threads (this machine's cores ÷ its ranks)\n".utf8))
            return share
        }
        return value
    }

    /// Calls `body` on disjoint ranges covering `0..<count`, in parallel when each range would
    /// still hold at least `minimumPerThread` items.
    @inline(__always)
    public static func forRanges(_ count: Int, minimumPerThread: Int = 16_384,
                                 _ body: (Range<Int>) -> Void) {
        let threads = min(threadCount, count / max(minimumPerThread, 1))
        if threads <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        // Up to four chunks per thread: the cores are shared, and a thread that loses its core for a
        // while then leaves its later chunks to the other instead of holding up the whole pass. Every
        // body is element- or row-wise, so where the chunks fall never changes a value.
        let chunks = min(4 * threads, max(threads, count / max(minimumPerThread / 4, 1)))
        perform(iterations: chunks) { c in body((count * c / chunks)..<(count * (c + 1) / chunks)) }
    }

    /// Calls `body(i)` for every i in 0..<iterations on up to `threadCount` threads (the caller's and the
    /// worker pool's), returning when every call has; chunks go to whichever thread is free first.
    @inline(__always)
    public static func perform(iterations: Int, _ body: (Int) -> Void) {
        WorkerPool.shared.run(iterations: iterations, threads: threadCount, body)
    }

    /// `forRanges` over `rows` rows of `width` elements each, split when every thread still gets
    /// about 16K elements of work.
    @inline(__always)
    public static func forRows(_ rows: Int, width: Int, _ body: (Range<Int>) -> Void) {
        forRanges(rows, minimumPerThread: max(1, 16_384 / max(width, 1)), body)
    }
}
