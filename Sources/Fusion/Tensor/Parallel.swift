// Splitting element-wise and row-wise loops over the machine's cores.
//
// The closure runs once per chunk (never per element), on contiguous ranges, so the loops inside stay
// plain pointer loops the compiler vectorises. Small jobs run inline: waking a second thread costs a
// few microseconds, more than ~16K element-wise operations take.
import Foundation

public enum Parallel {
    /// Worker count for element-wise passes: the cores this process may use.
    nonisolated(unsafe) public static var threadCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

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
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                body((count * c / chunks)..<(count * (c + 1) / chunks))
            }
        }
    }

    /// `forRanges` over `rows` rows of `width` elements each, split when every thread still gets
    /// about 16K elements of work.
    @inline(__always)
    public static func forRows(_ rows: Int, width: Int, _ body: (Range<Int>) -> Void) {
        forRanges(rows, minimumPerThread: max(1, 16_384 / max(width, 1)), body)
    }
}
