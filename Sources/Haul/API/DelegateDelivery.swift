import Foundation

/// Delivers blocks to the delegate queue in order and one at a time, even when the queue given
/// allows concurrency: each block depends on the one before it.
final class DelegateDelivery: @unchecked Sendable {
    // Unchecked: `lock` guards `last`.
    let queue: OperationQueue
    private let lock = NSLock()
    /// Weak: the queue holds an operation until it has run, and a finished one needs no
    /// dependents. A strong reference would keep the last block (and its delegate) alive.
    private weak var last: Operation?

    init(queue: OperationQueue?) {
        if let queue {
            self.queue = queue
        } else {
            let serial = OperationQueue()
            serial.maxConcurrentOperationCount = 1
            serial.name = "haul.delegate"
            self.queue = serial
        }
    }

    func enqueue(_ block: @escaping @Sendable () -> Void) {
        let operation = BlockOperation(block: block)
        lock.withLock {
            if let last, !last.isFinished { operation.addDependency(last) }
            last = operation
        }
        queue.addOperation(operation)
    }
}
