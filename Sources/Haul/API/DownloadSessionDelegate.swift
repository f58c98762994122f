import Foundation

/// Receives a session's download events, like `URLSessionDownloadDelegate`: code written for
/// URLSession ports by renaming `urlSession` to `downloadSession`.
///
/// Every method has a default empty implementation. Calls arrive on the session's delegate
/// queue, in order, never concurrently.
public protocol DownloadSessionDelegate: AnyObject, Sendable {
    /// Bytes were written since the last call (coalesced: at most about every 100 ms).
    /// `totalBytesExpectedToWrite` is `NSURLSessionTransferSizeUnknown` (-1) while unknown.
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                         didWriteData bytesWritten: Int64, totalBytesWritten: Int64,
                         totalBytesExpectedToWrite: Int64)

    /// The download finished. The file at `location` is valid only during this call: move it or
    /// open it before returning; Haul deletes it afterwards.
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                         didFinishDownloadingTo location: URL)

    /// The task ended: `error` is nil on success.
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         didCompleteWithError error: (any Error)?)

    /// A task made from resume data continues at `fileOffset` (the bytes before it are kept).
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                         didResumeAtOffset fileOffset: Int64, expectedTotalBytes: Int64)

    /// A background session was created again (in this process) and every event of its tasks
    /// that ended while no process was attached has been delivered, as URLSession's
    /// `urlSessionDidFinishEvents(forBackgroundURLSession:)`.
    func downloadSessionDidFinishEvents(forBackgroundSession session: DownloadSession)
}

/// Default implementations: every delegate method is optional.
extension DownloadSessionDelegate {
    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                                didWriteData bytesWritten: Int64, totalBytesWritten: Int64,
                                totalBytesExpectedToWrite: Int64) {}

    /// Does nothing (the file is deleted after the call).
    public func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                                didFinishDownloadingTo location: URL) {}

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, task: DownloadTask,
                                didCompleteWithError error: (any Error)?) {}

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                                didResumeAtOffset fileOffset: Int64, expectedTotalBytes: Int64) {}

    /// Does nothing.
    public func downloadSessionDidFinishEvents(forBackgroundSession session: DownloadSession) {}
}

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
