// Floating-point operations counted by the kernels themselves (forward and backward), so that a run
// can log measured FLOPs beside the 6·N·D estimate. Matrix products count 2·m·n·k; other kernels
// count their multiply-adds as documented beside each.

public enum FlopCounter {
    nonisolated(unsafe) public private(set) static var total: Int64 = 0

    @inline(__always)
    public static func add(_ flops: Int) { total &+= Int64(flops) }

    public static func reset() { total = 0 }

    /// The FLOPs `body` performs.
    public static func measure(_ body: () throws -> Void) rethrows -> Int64 {
        let start = total
        try body()
        return total - start
    }
}
