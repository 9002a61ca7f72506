// SIGINT (Ctrl-C) and SIGTERM (how Slurm and other schedulers preempt a job, before SIGKILL) while a
// run trains or a sweep waits: the handler only records the signal, and the loop that owns the work
// stops at its next safe point (a training run: after the step, with a checkpoint written and the log
// flushed) and exits with 128 + the signal (130, 143). A second SIGINT exits at once, as a user pressing
// Ctrl-C twice expects; a SIGTERM after a SIGINT, or the other way round, does not (a terminal's Ctrl-C
// and a sweep forwarding it reach the same run). A sweep's runs are in process groups of their own
// (Foundation's Process puts them there), so a terminal's Ctrl-C reaches only the sweep: it registers
// each run with `forward(to:)`, and every signal it receives is passed on to them first.
import Foundation
import Synchronization

enum Interruption {
    /// The first signal received since `install()`, or 0.
    private static let received = Atomic<Int32>(0)
    /// Written from the handler with write(2), the one output call that is safe there.
    private static let secondSignalNotice = Array("\nfusion: second Ctrl-C: stopping at once, without a checkpoint\n".utf8)
    private static let firstSignalNotice = Array("\nfusion: stopping once the work in progress is saved (Ctrl-C again to stop at once)\n".utf8)

    /// Process ids that receive every signal this process does; 0 marks a free slot. A fixed buffer, so
    /// that the handler reads it without allocating or locking.
    private static let forwardSlots = 64
    private static let forwarded: UnsafeMutablePointer<Atomic<Int32>> = {
        let slots = UnsafeMutablePointer<Atomic<Int32>>.allocate(capacity: forwardSlots)
        for i in 0..<forwardSlots { (slots + i).initialize(to: Atomic<Int32>(0)) }
        return slots
    }()

    /// Passes every signal received from now on to `pid` as well (a sweep's run). False when all slots are taken.
    @discardableResult
    static func forward(to pid: Int32) -> Bool {
        (0..<forwardSlots).contains { forwarded[$0].compareExchange(expected: 0, desired: pid, ordering: .sequentiallyConsistent).exchanged }
    }

    static func stopForwarding(to pid: Int32) {
        for i in 0..<forwardSlots { _ = forwarded[i].compareExchange(expected: pid, desired: 0, ordering: .sequentiallyConsistent) }
    }

    /// Starts recording SIGINT and SIGTERM instead of dying of them.
    static func install() {
        received.store(0, ordering: .sequentiallyConsistent)
        _ = secondSignalNotice.count + firstSignalNotice.count + Int(bitPattern: forwarded)  // initialise the globals outside the handler
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber) { number in
                for i in 0..<Interruption.forwardSlots {
                    let pid = Interruption.forwarded[i].load(ordering: .sequentiallyConsistent)
                    if pid > 0 { kill(pid, number) }
                }
                let first = Interruption.received.compareExchange(expected: 0, desired: number, ordering: .sequentiallyConsistent)
                if first.exchanged {
                    Interruption.firstSignalNotice.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
                } else if number == SIGINT && first.original == SIGINT {
                    Interruption.secondSignalNotice.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
                    _exit(128 + SIGINT)
                }
            }
        }
    }

    /// Restores the default actions (a process that installed the handlers for one run, as the tests do).
    static func uninstall() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        received.store(0, ordering: .sequentiallyConsistent)
    }

    /// The signal received, if any.
    static var pending: Int32? {
        let number = received.load(ordering: .sequentiallyConsistent)
        return number == 0 ? nil : number
    }

    static func name(_ signalNumber: Int32) -> String { signalNumber == SIGINT ? "SIGINT" : signalNumber == SIGTERM ? "SIGTERM" : "signal \(signalNumber)" }
}

/// Thrown by a loop that stopped on a signal after saving its work; `main` exits with `exitStatus`.
struct Interrupted: Error, CustomStringConvertible {
    let signal: Int32
    let description: String
    var exitStatus: Int32 { 128 + signal }
}
