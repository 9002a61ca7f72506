import Foundation
import XCTest
@testable import Fusion

final class WorkerPoolTests: XCTestCase {
    /// Counts how often each iteration ran (one slot each, so no two threads share a counter).
    private func runCounts(iterations: Int, threads: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: iterations)
        counts.withUnsafeMutableBufferPointer { counts in
            WorkerPool.shared.run(iterations: iterations, threads: threads) { i in counts[i] += 1 }
        }
        return counts
    }

    func testEveryIterationRunsExactlyOnce() {
        for threads in [1, 2, 3, 5] {
            for iterations in [0, 1, 2, 3, 17, 1_000] {
                for _ in 0..<50 {  // many jobs back to back: workers still running or spinning from the last one
                    XCTAssertEqual(runCounts(iterations: iterations, threads: threads), [Int](repeating: 1, count: iterations),
                                   "\(iterations) iterations on \(threads) threads")
                }
            }
        }
    }

    /// The thread each of `iterations` slow iterations ran on.
    private func threadsUsed(iterations: Int, threads: Int) -> Set<UInt> {
        var used = [UInt](repeating: 0, count: iterations)
        used.withUnsafeMutableBufferPointer { used in
            WorkerPool.shared.run(iterations: iterations, threads: threads) { i in
                used[i] = UInt(pthread_self())
                usleep(2_000)
            }
        }
        return Set(used)
    }

    func testWorkReachesAWorkerAlsoAfterItHasGoneToSleep() {
        XCTAssertEqual(threadsUsed(iterations: 8, threads: 1), [UInt(pthread_self())], "one thread: all on the caller")
        XCTAssertEqual(threadsUsed(iterations: 8, threads: 2).count, 2, "a worker takes chunks (the first pass may have to wake it)")
        usleep(200_000)  // far beyond the spin: the worker sleeps and must be woken
        XCTAssertEqual(threadsUsed(iterations: 8, threads: 2).count, 2, "a sleeping worker is woken")
        XCTAssertEqual(threadsUsed(iterations: 8, threads: 3).count, 3)
    }

    func testNestedAndConcurrentCallsRunInlineWithoutDeadlock() {
        // A pass started inside a pass runs on the thread that starts it.
        var inner = [Int](repeating: 0, count: 4 * 10)
        inner.withUnsafeMutableBufferPointer { inner in
            WorkerPool.shared.run(iterations: 4, threads: 2) { outer in
                WorkerPool.shared.run(iterations: 10, threads: 2) { i in inner[outer * 10 + i] += 1 }
            }
        }
        XCTAssertEqual(inner, [Int](repeating: 1, count: 40))
        // Two threads using the pool at once: one gets it, the other runs its own chunks.
        let results = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            var wrong = 0
            for _ in 0..<200 where runCounts(iterations: 9, threads: 2) != [Int](repeating: 1, count: 9) { wrong += 1 }
            results[caller] = wrong
        }
        XCTAssertEqual([results[0], results[1]], [0, 0])
    }

    func testThreadCountComesFromFusionThreadsWhenItIsAPositiveNumber() {
        XCTAssertEqual(Parallel.threadCount(environment: [:], cores: 2), 2)
        XCTAssertEqual(Parallel.threadCount(environment: [:], cores: 0), 1)
        XCTAssertEqual(Parallel.threadCount(environment: ["FUSION_THREADS": "1"], cores: 8), 1)
        XCTAssertEqual(Parallel.threadCount(environment: ["FUSION_THREADS": " 3 "], cores: 2), 3)
        for bad in ["0", "-2", "two", ""] {  // reported, and the cores are used
            XCTAssertEqual(Parallel.threadCount(environment: ["FUSION_THREADS": bad], cores: 4), 4, bad)
        }
    }
}
