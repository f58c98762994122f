import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Synchronization

/// Downloads files over HTTP(S), each split into byte ranges fetched over several connections.
///
/// Shaped like `URLSession`: make tasks with the `downloadTask` methods (they start on
/// `resume()`), or `await` a download with `download(from:to:)`. One session holds one libcurl
/// multi handle and one serial queue that all its downloads share, so threads do not grow with
/// connections.
public final class DownloadSession: Sendable {
    /// The session's settings (copied at creation).
    public let configuration: Configuration
    /// The delegate given at creation. The session keeps it, as URLSession does.
    public let delegate: (any DownloadSessionDelegate)?
    /// Where delegate and completion-handler calls run (serial unless you gave a concurrent
    /// queue; calls are ordered and never overlap either way).
    public var delegateQueue: OperationQueue { delivery.queue }

    let multi: CurlMulti
    let logger: Logger
    /// The file syscalls downloads use; tests substitute failures (ENOSPC, short writes).
    let syscalls: Syscalls
    let delivery: DelegateDelivery
    private let nextIdentifier = Atomic<Int>(1)

    /// A session with default settings and no delegate.
    public static let shared = DownloadSession(configuration: .default)

    /// Creates a session.
    ///
    /// - Parameters:
    ///   - configuration: settings for every download of the session.
    ///   - delegate: receives progress and completion of tasks made without a completion handler.
    ///   - delegateQueue: where delegate calls run; `nil` makes a serial queue.
    public convenience init(configuration: Configuration = .default, delegate: (any DownloadSessionDelegate)? = nil,
                            delegateQueue: OperationQueue? = nil) {
        self.init(configuration: configuration, delegate: delegate, delegateQueue: delegateQueue, syscalls: .system)
    }

    init(configuration: Configuration, delegate: (any DownloadSessionDelegate)? = nil,
         delegateQueue: OperationQueue? = nil, syscalls: Syscalls) {
        self.syscalls = syscalls
        self.configuration = configuration
        self.delegate = delegate
        self.delivery = DelegateDelivery(queue: delegateQueue)
        self.logger = Logger(label: "haul")
        self.multi = CurlMulti(label: "haul.session", maxHostConnections: configuration.connectionsPerHost,
                               logger: logger)
    }

    // MARK: Tasks

    /// A task that downloads `url`; progress and the file reach the delegate.
    public func downloadTask(with url: URL) -> DownloadTask {
        makeTask(request: URLRequest(url: url), completionHandler: nil)
    }

    /// A task that downloads `url` and calls `completionHandler` with the file (valid only during
    /// the call), the response and the error.
    public func downloadTask(with url: URL,
                             completionHandler: @escaping @Sendable (URL?, URLResponse?, (any Error)?) -> Void) -> DownloadTask {
        makeTask(request: URLRequest(url: url), completionHandler: completionHandler)
    }

    /// A task that makes `request` (a GET; its headers are sent with every segment).
    public func downloadTask(with request: URLRequest) -> DownloadTask {
        makeTask(request: request, completionHandler: nil)
    }

    /// A task that makes `request` and calls `completionHandler` when done.
    public func downloadTask(with request: URLRequest,
                             completionHandler: @escaping @Sendable (URL?, URLResponse?, (any Error)?) -> Void) -> DownloadTask {
        makeTask(request: request, completionHandler: completionHandler)
    }

    /// A task that continues a download from data `cancel(byProducingResumeData:)` produced.
    public func downloadTask(withResumeData resumeData: Data) -> DownloadTask {
        makeTask(request: nil, resumeData: resumeData, completionHandler: nil)
    }

    /// A task that continues a download from resume data and calls `completionHandler` when done.
    public func downloadTask(withResumeData resumeData: Data,
                             completionHandler: @escaping @Sendable (URL?, URLResponse?, (any Error)?) -> Void) -> DownloadTask {
        makeTask(request: nil, resumeData: resumeData, completionHandler: completionHandler)
    }

    // MARK: Async

    /// Downloads `url` and returns where the file is and the server's response.
    ///
    /// - Parameters:
    ///   - destination: where to put the file (replaced if it exists). When `nil`, the file is
    ///     left in the temporary directory and the caller owns it.
    /// - Throws: `URLError` (HTTP statuses by the seed's Table 1, transport failures) or
    ///   `HaulError`. Cancelling the Swift task cancels the download (`URLError.cancelled`).
    public func download(from url: URL, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        try await download(for: URLRequest(url: url), to: destination)
    }

    /// Downloads `request` (a GET) and returns where the file is and the server's response.
    public func download(for request: URLRequest, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        let task = makeTask(request: request, destination: destination, completionHandler: nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                task.setFinishHook { continuation.resume(with: $0) }
                task.resume()
            }
        } onCancel: {
            task.cancel()
        }
    }

    // MARK: Internal

    private func makeTask(request: URLRequest?, resumeData: Data? = nil, destination: URL? = nil,
                          completionHandler: (@Sendable (URL?, URLResponse?, (any Error)?) -> Void)?) -> DownloadTask {
        let identifier = nextIdentifier.add(1, ordering: .relaxed).oldValue
        return DownloadTask(session: self, identifier: identifier, request: request, resumeData: resumeData,
                            destination: destination, completionHandler: completionHandler)
    }

    /// The temp file for a download: beside the destination (so the final rename is atomic),
    /// else in the configured temporary directory.
    func temporaryPath(for destination: URL?, task: Int) -> String {
        let random = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        if let destination {
            return destination.deletingLastPathComponent().path + "/.\(destination.lastPathComponent).haul-\(random)"
        }
        let directory = (configuration.temporaryDirectory ?? FileManager.default.temporaryDirectory).path
        return directory + "/haul-download-\(task)-\(random).tmp"
    }

    /// The engine settings for one request.
    func settings(for request: URLRequest) throws(HaulError) -> DownloadOperation.Settings {
        guard let url = request.url, let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              url.host != nil else {
            throw .invalidURL(request.url?.absoluteString ?? "(no URL)")
        }
        let method = request.httpMethod?.uppercased() ?? "GET"
        guard method == "GET" else {
            throw .unsupportedRequest(reason: "method \(method); downloads use GET")
        }
        var options = RequestOptions(url: url.absoluteString)
        var headers = configuration.httpAdditionalHeaders
        for (name, value) in request.allHTTPHeaderFields ?? [:] { headers[name] = value }
        // Range and If-Range belong to the engine.
        headers = headers.filter { !["range", "if-range"].contains($0.key.lowercased()) }
        options.headers = headers.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        options.userAgent = configuration.userAgent
        options.connectTimeoutMilliseconds = Int(configuration.timeoutIntervalForConnect * 1000)
        let stall = min(configuration.timeoutIntervalForRequest, request.timeoutInterval)
        options.stallTimeoutSeconds = max(1, Int(stall.rounded(.up)))
        options.bufferSize = configuration.receiveBufferSize
        options.caFile = configuration.caCertificateFile
        options.verifyTLS = configuration.verifiesTLSCertificates
        options.proxy = configuration.proxy
        var settings = DownloadOperation.Settings(
            request: options,
            engine: .init(connections: configuration.connectionsPerDownload,
                          minimumSplit: configuration.minimumSplitSize,
                          maxRetries: configuration.retryLimit))
        settings.syncOnFinish = configuration.syncsBeforeMove
        return settings
    }
}
