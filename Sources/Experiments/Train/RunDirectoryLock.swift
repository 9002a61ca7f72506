// One training process per run directory: an exclusive flock(2) on the directory itself (no lock file
// to leave behind), held until the run returns or its process dies, when the kernel drops it. It is what
// makes it safe for a starting run to delete the temporary files a killed one left, and it turns two
// processes on one run (a Slurm task requeued while its first attempt still runs, a command typed twice)
// into a clear error instead of two writers on one log.
import Foundation

final class RunDirectoryLock {
    private var descriptor: Int32

    init(_ directory: String) throws {
        descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw RunFailure(description: "cannot open the run directory \(directory): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "another fusion train is running in it; wait for it to end or stop it first"
                                              : String(cString: strerror(errno))
            close(descriptor)
            throw RunFailure(description: "\(directory): \(reason)")
        }
    }

    func release() {
        guard descriptor >= 0 else { return }
        close(descriptor)  // drops the lock
        descriptor = -1
    }

    deinit { release() }
}
