import Foundation

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
    /// let task = session.downloadTask(with: url)
    /// task.resume()
    /// for try await event in task.events {
    ///     if case .finished(let location) = event { try FileManager.default.moveItem(at: location, to: target) }
    /// }
    /// ```
    public var events: AsyncThrowingStream<DownloadEvent, any Error> { makeEventStream() }
}
