import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The async API: URLSession's `download(from:delegate:)` family, and variants that put the file
/// at a destination of your choice.
extension DownloadSession {
    /// Downloads `url`, as `URLSession.download(from:delegate:)`: returns where the file is (in
    /// the temporary directory; the caller owns it and should move it) and the response.
    ///
    /// - Parameter delegate: hears this task's events (progress, metrics, redirects,
    ///   authentication challenges) before the session's delegate does.
    /// - Throws: `URLError` (HTTP statuses by URLSession's download-task error table, transport
    ///   failures) or `HaulError`. A failure that can be continued carries resume data
    ///   (`URLError.downloadTaskResumeData`). Cancelling the Swift task cancels the download.
    public func download(from url: URL, delegate: (any DownloadTaskDelegate)? = nil) async throws -> (URL, URLResponse) {
        try await download(for: URLRequest(url: url), delegate: delegate)
    }

    /// Downloads `request`, as `URLSession.download(for:delegate:)`. A GET is split into ranges;
    /// any other method (a `POST` with a body, say) is sent once and read as one stream, and
    /// cannot be resumed.
    public func download(for request: URLRequest, delegate: (any DownloadTaskDelegate)? = nil) async throws -> (URL, URLResponse) {
        try await run(makeTask(request: request, delegate: delegate, completionHandler: nil))
    }

    /// Continues a download from resume data, as `URLSession.download(resumeFrom:delegate:)`.
    /// The file goes where the resume data says: beside the destination it was recorded with
    /// (from a journal or a download to a destination), else to the temporary directory.
    public func download(resumeFrom resumeData: Data, delegate: (any DownloadTaskDelegate)? = nil) async throws -> (URL, URLResponse) {
        let recorded = (try? ResumeData(resumeData))?.destination.map { URL(fileURLWithPath: $0) }
        return try await run(makeTask(request: nil, resumeData: resumeData, destination: recorded, delegate: delegate,
                                      completionHandler: nil))
    }

    /// Downloads `url` to `destination` and returns it with the server's response.
    ///
    /// - Parameters:
    ///   - destination: where to put the file (replaced if it exists, unless
    ///     `replacesExistingFiles` is off). When `nil`, the file is left in the temporary
    ///     directory and the caller owns it.
    /// - Throws: what `download(from:delegate:)` throws. Cancelling the Swift task cancels the
    ///   download; with a destination, the partial file and its journal stay beside it
    ///   (`journalURL(for:)`), and `download(resumeFrom:to:)` with the journal continues it.
    @_disfavoredOverload
    public func download(from url: URL, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        try await download(for: URLRequest(url: url), to: destination)
    }

    /// Downloads `request` to `destination` and returns it with the server's response.
    @_disfavoredOverload
    public func download(for request: URLRequest, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        try await http(run(makeTask(request: request, destination: destination, completionHandler: nil)))
    }

    /// Downloads `request` and checks that the file's SHA-256 is `expectedSHA256` (64 hex digits,
    /// `sha-256=HEX` or `sha256-BASE64`); on a mismatch it throws `HaulError.checksumMismatch` and
    /// the file is not kept.
    public func download(for request: URLRequest, to destination: URL? = nil,
                         expectedSHA256: String) async throws -> (URL, HTTPURLResponse) {
        let task = makeTask(request: request, destination: destination, completionHandler: nil)
        task.expectedSHA256 = expectedSHA256
        return try await http(run(task))
    }

    /// Continues a download from resume data (from `cancelByProducingResumeData()`, a failed
    /// download's error, or the journal beside a destination).
    ///
    /// - Parameter destination: where the file goes; `nil` uses the destination recorded in the
    ///   resume data, else leaves it at its temp path for the caller.
    /// - Throws: `HaulError.resumeDataInvalid` when the data or its partial file cannot be used,
    ///   and what `download(from:to:)` throws.
    @_disfavoredOverload
    public func download(resumeFrom resumeData: Data, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        let recorded = (try? ResumeData(resumeData))?.destination.map { URL(fileURLWithPath: $0) }
        return try await http(run(makeTask(request: nil, resumeData: resumeData, destination: destination ?? recorded,
                                           completionHandler: nil)))
    }

    func run(_ task: DownloadTask) async throws -> (URL, URLResponse) {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                task.setFinishHook { continuation.resume(with: $0) }
                task.resume()
            }
        } onCancel: {
            task.cancel()
        }
    }

    func http(_ result: (URL, URLResponse)) -> (URL, HTTPURLResponse) {
        let (location, response) = result
        return (location, (response as? HTTPURLResponse)
            ?? HTTPURLResponse(url: response.url ?? location, statusCode: 200, httpVersion: "HTTP/1.1", headerFields: [:])!)
    }
}
