// The processes of one data-parallel run, over Open MPI (the only Swift file that imports CMPI).
//
// MPI is initialised only when a launcher started this process (mpirun, or srun with PMIx): without
// one, `Communicator.world` is a single rank and every collective is the identity, so a plain
// `fusion train` neither needs nor touches MPI. Only the main thread calls MPI (MPI_THREAD_FUNNELED);
// the worker pool never does.
import CMPI
import Foundation

public final class Communicator: @unchecked Sendable {
    /// This process's rank, 0..<size; rank 0 writes the run's files.
    public let rank: Int
    public let size: Int
    /// Whether MPI was initialised (under a launcher); false for the single-process world.
    public let usesMPI: Bool

    public var isRoot: Bool { rank == 0 }

    private init(rank: Int, size: Int, usesMPI: Bool) {
        self.rank = rank
        self.size = size
        self.usesMPI = usesMPI
    }

    /// The environment variables a launcher sets: Open MPI's mpirun, PMIx (srun --mpi=pmix) and PMI-1/2.
    static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]

    /// Whether `environment` says a launcher started the process.
    public static func launched(environment: [String: String]) -> Bool {
        launcherVariables.contains { environment[$0] != nil }
    }

    /// Ranks of the run that share this machine, from the launcher's environment (1 without one):
    /// each takes cores ÷ this many threads.
    public static func localRanks(environment: [String: String]) -> Int {
        for name in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE"] {
            if let value = environment[name].flatMap({ Int($0) }), value >= 1 { return value }
        }
        return 1
    }

    /// The run's processes: initialised on first use, under a launcher; a single rank otherwise.
    public static let world: Communicator = {
        guard launched(environment: ProcessInfo.processInfo.environment) else { return Communicator(rank: 0, size: 1, usesMPI: false) }
        var provided: Int32 = 0
        let status = MPI_Init_thread(nil, nil, fusion_MPI_THREAD_FUNNELED(), &provided)
        guard status == 0 else {
            FileHandle.standardError.write(Data("fusion: MPI_Init_thread failed (error \(status)) although a launcher started this process\n".utf8))
            exit(1)
        }
        var rank: Int32 = 0, size: Int32 = 1
        MPI_Comm_rank(fusion_MPI_COMM_WORLD(), &rank)
        MPI_Comm_size(fusion_MPI_COMM_WORLD(), &size)
        return Communicator(rank: Int(rank), size: Int(size), usesMPI: true)
    }()

    /// Rows `rows` split over the ranks: this rank's contiguous share (the caller checks divisibility).
    public func share(of rows: Int) -> Range<Int> {
        let each = rows / size
        return rank * each..<(rank + 1) * each
    }

    /// Sums `values` over the ranks, in place on every rank, `bucket` elements per MPI_Allreduce.
    public func sum(_ values: UnsafeMutableBufferPointer<Float>, bucket: Int = 1 << 20) {
        guard usesMPI && size > 1, let base = values.baseAddress else { return }
        var start = 0
        while start < values.count {
            let count = min(bucket, values.count - start)
            check(MPI_Allreduce(fusion_MPI_IN_PLACE(), base + start, Int32(count), fusion_MPI_FLOAT(), fusion_MPI_SUM(), fusion_MPI_COMM_WORLD()),
                  "MPI_Allreduce")
            start += count
        }
    }

    /// The sum over the ranks of each value (Doubles: logged losses, counts, flags).
    public func sum(_ values: [Double]) -> [Double] { reduce(values, op: fusion_MPI_SUM()) }

    /// The largest over the ranks of each value.
    public func maximum(_ values: [Double]) -> [Double] { reduce(values, op: fusion_MPI_MAX()) }

    /// The smallest over the ranks of each value.
    public func minimum(_ values: [Double]) -> [Double] { reduce(values, op: fusion_MPI_MIN()) }

    private func reduce(_ values: [Double], op: MPI_Op) -> [Double] {
        guard usesMPI && size > 1, !values.isEmpty else { return values }
        var result = values
        result.withUnsafeMutableBufferPointer { buffer in
            check(MPI_Allreduce(fusion_MPI_IN_PLACE(), buffer.baseAddress, Int32(buffer.count), fusion_MPI_DOUBLE(), op, fusion_MPI_COMM_WORLD()),
                  "MPI_Allreduce")
        }
        return result
    }

    /// Every rank's `bytes`, in rank order, on rank 0 (an empty array on the others).
    public func gatherToRoot(_ bytes: [UInt8]) -> [[UInt8]] {
        guard usesMPI && size > 1 else { return [bytes] }
        var count = Int32(bytes.count)
        var counts = [Int32](repeating: 0, count: isRoot ? size : 0)
        counts.withUnsafeMutableBufferPointer { countsBuffer in
            check(MPI_Gather(&count, 1, fusion_MPI_INT(), countsBuffer.baseAddress, 1, fusion_MPI_INT(), 0, fusion_MPI_COMM_WORLD()), "MPI_Gather")
        }
        var offsets = [Int32](repeating: 0, count: counts.count)
        for i in counts.indices.dropFirst() { offsets[i] = offsets[i - 1] + counts[i - 1] }
        var gathered = [UInt8](repeating: 0, count: Int(counts.reduce(0, +)))
        bytes.withUnsafeBufferPointer { send in
            gathered.withUnsafeMutableBufferPointer { receive in
                check(MPI_Gatherv(send.baseAddress, count, fusion_MPI_BYTE(), receive.baseAddress, counts, offsets, fusion_MPI_BYTE(), 0,
                                  fusion_MPI_COMM_WORLD()), "MPI_Gatherv")
            }
        }
        return counts.indices.map { Array(gathered[Int(offsets[$0])..<Int(offsets[$0] + counts[$0])]) }
    }

    /// Ends MPI at a normal exit (every rank must get here).
    public func finalize() {
        if usesMPI { MPI_Finalize() }
    }

    /// Ends every rank of the run at once: for an error on some ranks while others may wait in a collective.
    public func abort(status: Int32) -> Never {
        if usesMPI && size > 1 { MPI_Abort(fusion_MPI_COMM_WORLD(), status) }
        exit(status)
    }

    private func check(_ status: Int32, _ call: String) {
        // Open MPI's default handler (MPI_ERRORS_ARE_FATAL) aborts before this; kept for a changed handler.
        if status != 0 {
            FileHandle.standardError.write(Data("fusion: \(call) failed on rank \(rank) of \(size) (error \(status))\n".utf8))
            abort(status: 1)
        }
    }
}
