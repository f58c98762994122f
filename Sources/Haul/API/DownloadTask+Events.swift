import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a running download reports to async code through `DownloadTask.events`.
public enum DownloadEvent: Sendable, Equatable {
    /// Bytes on disk so far and the total (`NSURLSessionTransferSizeUnknown` while unknown).
    case progress(totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64)
    /// A task made from resume data continues at `offset`.
    case resumed(offset: Int64, expectedTotalBytes: Int64)
    /// The file is complete at `location`. It belongs to the code iterating the events: move or
    /// delete it (Haul does not delete files it handed to an `events` consumer).
    case finished(location: URL)
}

extension DownloadTask {
    /// The task's progress, resumption and completion as an async sequence, for progress in
    /// async code. It ends after `.finished`, or throws the task's error. Cancelling the
    /// iterating Swift task cancels the download.
    ///
    /// ```swift
    /// let task = session.downloadTask(with: URLRequest(url: url), to: target)   // lands at `target`
    /// let events = task.events
    /// task.resume()
    /// for try await event in events {
    ///     if case .progress(let written, let total) = event { print(written, "/", total) }
    /// }
    /// ```
    public var events: AsyncThrowingStream<DownloadEvent, any Error> { makeEventStream() }
}

/// The async API's hook and the `events` streams.
extension DownloadTask {
    /// Sets the hook the async API completes through (before `resume()`). A task that already
    /// ended (cancelled before it started, as a cancelled Swift task does) calls it at once.
    func setFinishHook(_ hook: @escaping @Sendable (Result<(URL, URLResponse), any Error>) -> Void) {
        let ended: (any Error)? = lock.withLock {
            guard _state == .completed, let error = _error else {
                finishHook = hook
                return nil
            }
            return error
        }
        if let ended { hook(.failure(ended)) }
    }

    /// A stream of this task's events; see `events`.
    func makeEventStream() -> AsyncThrowingStream<DownloadEvent, any Error> {
        AsyncThrowingStream { continuation in
            let id = UUID()
            let replay: Result<URL, any Error>? = lock.withLock {
                eventsAttached = true
                if let terminal { return terminal }
                streams[id] = continuation
                return nil
            }
            if let replay {
                Self.end(continuation, with: replay)
                return
            }
            continuation.onTermination = { [weak self] termination in
                guard let self else { return }
                self.lock.withLock { _ = self.streams.removeValue(forKey: id) }
                if case .cancelled = termination { self.cancel() }
            }
        }
    }

    func yield(_ event: DownloadEvent) {
        let continuations = lock.withLock { Array(streams.values) }
        for continuation in continuations { continuation.yield(event) }
    }

    func finishEvents(_ result: Result<URL, any Error>) {
        let continuations = lock.withLock {
            terminal = result
            let all = Array(streams.values)
            streams.removeAll()
            return all
        }
        for continuation in continuations { Self.end(continuation, with: result) }
    }

    /// Ends an event stream: `.finished` then the end, or the error.
    static func end(_ continuation: AsyncThrowingStream<DownloadEvent, any Error>.Continuation,
                            with result: Result<URL, any Error>) {
        switch result {
        case .success(let location):
            continuation.yield(.finished(location: location))
            continuation.finish()
        case .failure(let error):
            continuation.finish(throwing: error)
        }
    }
}
