import Foundation

/// At most `count` holders at once: `acquire()` waits for a free slot, in the order asked.
final class Slots: @unchecked Sendable {
    // Unchecked: `lock` guards `free` and `waiting`.
    private let lock = NSLock()
    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(_ count: Int) {
        free = max(1, count)
    }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = lock.withLock { () -> Bool in
                guard free > 0 else {
                    waiting.append(continuation)
                    return false
                }
                free -= 1
                return true
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            guard !waiting.isEmpty else {
                free += 1
                return nil
            }
            return waiting.removeFirst()
        }
        next?.resume()
    }

    /// A release that happens once, whichever of its callers comes first.
    func holding() -> Held {
        Held(self)
    }

    final class Held: @unchecked Sendable {
        // Unchecked: `lock` guards `slots`.
        private let lock = NSLock()
        private var slots: Slots?

        fileprivate init(_ slots: Slots) {
            self.slots = slots
        }

        func release() {
            lock.withLock {
                defer { slots = nil }
                return slots
            }?.release()
        }
    }
}
