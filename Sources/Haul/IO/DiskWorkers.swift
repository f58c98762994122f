import Foundation

/// Runs work that waits for the disk (the periodic `fdatasync` of a running download, and a
/// finished file's `fdatasync` and rename) on threads of its own, up to `width` at once, made
/// when needed and ended after a while without work.
///
/// Dispatch's concurrent queues on Linux keep about one thread per core busy, and a thread
/// waiting in `fdatasync` still counts: on two cores the syncs of sixteen finished files ran two
/// at a time, each waiting for the one before it, while the disk could take them all at once.
final class DiskWorkers: @unchecked Sendable {
    // Unchecked: `condition` guards `pending`, `threads` and `idle`.
    /// Shared by every download of the process.
    static let shared = DiskWorkers(width: 8)

    private let condition = NSCondition()
    private var pending: [@Sendable () -> Void] = []
    private var threads = 0
    private var idle = 0
    private let width: Int
    private let idleLifetime: TimeInterval

    init(width: Int, idleLifetime: TimeInterval = 2) {
        self.width = max(1, width)
        self.idleLifetime = idleLifetime
    }

    /// Runs `work` on one of the threads, soon: at once while fewer than `width` are busy.
    func async(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        pending.append(work)
        // Every waiting item needs a thread that is idle now, or a new one.
        let spawn = pending.count > idle && threads < width
        if spawn { threads += 1 }
        condition.signal()
        condition.unlock()
        if spawn { Thread.detachNewThread { [self] in serve() } }
    }

    /// Threads now, busy or idle.
    var threadCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return threads
    }

    private func serve() {
        condition.lock()
        while true {
            if pending.isEmpty {
                idle += 1
                let signalled = condition.wait(until: Date(timeIntervalSinceNow: idleLifetime))
                idle -= 1
                if !signalled, pending.isEmpty {
                    threads -= 1
                    condition.unlock()
                    return
                }
                continue
            }
            let work = pending.removeFirst()
            condition.unlock()
            work()
            condition.lock()
        }
    }
}
