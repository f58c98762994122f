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
    /// The delegate given at creation. The session keeps it, as URLSession does, until
    /// `finishTasksAndInvalidate()` or `invalidateAndCancel()` lets it go.
    public var delegate: (any DownloadSessionDelegate)? { lifecycle.withLock { $0.delegate } }
    /// Where delegate and completion-handler calls run (serial unless you gave a concurrent
    /// queue; calls are ordered and never overlap either way).
    public var delegateQueue: OperationQueue { delivery.queue }

    let multi: CurlMulti
    let logger: Logger
    /// The file syscalls downloads use; tests substitute failures (ENOSPC, short writes).
    let syscalls: Syscalls
    let delivery: DelegateDelivery
    private let nextIdentifier = Atomic<Int>(1)

    /// Running tasks and whether the session still takes new ones.
    private struct Lifecycle {
        var delegate: (any DownloadSessionDelegate)?
        var running: [Int: DownloadTask] = [:]
        var invalidated = false
        /// Background tasks by the daemon's GID.
        var background: [String: DownloadTask] = [:]
    }

    private let lifecycle: Mutex<Lifecycle>

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
        self.lifecycle = Mutex(Lifecycle(delegate: delegate))
        self.delivery = DelegateDelivery(queue: delegateQueue)
        self.logger = configuration.logger ?? Logger(label: "haul")
        self.multi = CurlMulti(label: "haul.session", maxHostConnections: configuration.connectionsPerHost,
                               logger: logger)
        if configuration.identifier != nil, delegate != nil {
            // A background session made again: take back its tasks and deliver what ended.
            attachBackgroundTasks(announcing: true)
        }
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

    /// A task that saves to `destination` (replacing it when done) instead of handing the file
    /// to the delegate. Its partial file and journal sit beside the destination, so after a
    /// crash or Ctrl-C `downloadTask(withResumeData:to:)` with the journal continues it.
    public func downloadTask(with request: URLRequest, to destination: URL) -> DownloadTask {
        makeTask(request: request, destination: destination, completionHandler: nil)
    }

    /// A task that continues from resume data and saves to `destination`.
    public func downloadTask(withResumeData resumeData: Data, to destination: URL) -> DownloadTask {
        makeTask(request: nil, resumeData: resumeData, destination: destination, completionHandler: nil)
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
    ///   `HaulError`. Cancelling the Swift task cancels the download (`URLError.cancelled`);
    ///   with a destination, the partial file and its journal stay beside it
    ///   (`journalURL(for:)`), and `download(resumeFrom:)` with the journal continues it.
    public func download(from url: URL, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        try await download(for: URLRequest(url: url), to: destination)
    }

    /// Downloads `request` (a GET) and returns where the file is and the server's response.
    public func download(for request: URLRequest, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        try await run(makeTask(request: request, destination: destination, completionHandler: nil))
    }

    /// Downloads `request` and checks that the file's SHA-256 is `expectedSHA256` (64 hex digits,
    /// `sha-256=HEX` or `sha256-BASE64`); on a mismatch it throws `HaulError.checksumMismatch` and
    /// the file is not kept.
    public func download(for request: URLRequest, to destination: URL? = nil,
                         expectedSHA256: String) async throws -> (URL, HTTPURLResponse) {
        let task = makeTask(request: request, destination: destination, completionHandler: nil)
        task.expectedSHA256 = expectedSHA256
        return try await run(task)
    }

    private func run(_ task: DownloadTask) async throws -> (URL, HTTPURLResponse) {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                task.setFinishHook { continuation.resume(with: $0) }
                task.resume()
            }
        } onCancel: {
            task.cancel()
        }
    }

    /// Continues a download from resume data (from `cancelByProducingResumeData()`, a failed
    /// download's error, or the journal beside a destination).
    ///
    /// - Parameter destination: where the file goes; `nil` uses the destination recorded in the
    ///   resume data, else leaves it at its temp path for the caller.
    /// - Throws: `HaulError.resumeDataInvalid` when the data or its partial file cannot be used,
    ///   and what `download(from:to:)` throws.
    public func download(resumeFrom resumeData: Data, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        let recorded = (try? ResumeData(resumeData))?.destination.map { URL(fileURLWithPath: $0) }
        return try await run(makeTask(request: nil, resumeData: resumeData, destination: destination ?? recorded,
                                      completionHandler: nil))
    }

    /// The journal a download to `destination` keeps beside it while running (and after it was
    /// cancelled or failed, so the same download can continue): its content is resume data.
    public static func journalURL(for destination: URL) -> URL {
        destination.deletingLastPathComponent().appendingPathComponent(SideNames.journal(for: destination.lastPathComponent))
    }

    // MARK: Invalidation

    /// Takes no new tasks; the running ones finish, then the session lets go of its delegate.
    /// Tasks made afterwards fail with `HaulError.sessionInvalidated`. Ignored by `shared`.
    public func finishTasksAndInvalidate() {
        guard self !== DownloadSession.shared else { return }
        lifecycle.withLock { state in
            state.invalidated = true
            if state.running.isEmpty { state.delegate = nil }
        }
    }

    /// Cancels every running task and takes no new ones; the delegate is let go once they have
    /// reported. Ignored by `shared`.
    public func invalidateAndCancel() {
        guard self !== DownloadSession.shared else { return }
        let running = lifecycle.withLock { state -> [DownloadTask] in
            state.invalidated = true
            if state.running.isEmpty { state.delegate = nil }
            return Array(state.running.values)
        }
        for task in running { task.cancel() }
    }

    /// A task starts; `false` when the session was invalidated.
    func register(_ task: DownloadTask) -> Bool {
        lifecycle.withLock { state in
            guard !state.invalidated else { return false }
            state.running[task.taskIdentifier] = task
            return true
        }
    }

    /// A task has delivered its last callback.
    func unregister(_ task: DownloadTask) {
        lifecycle.withLock { state in
            state.running[task.taskIdentifier] = nil
            if state.invalidated, state.running.isEmpty { state.delegate = nil }
        }
    }

    // MARK: Internal

    /// Tasks that started and have not delivered their end.
    var runningTasks: [DownloadTask] {
        lifecycle.withLock { Array($0.running.values) }.sorted { $0.taskIdentifier < $1.taskIdentifier }
    }

    /// The task following the daemon's download `gid`, if this session has one.
    func backgroundTask(_ gid: String) -> DownloadTask? {
        lifecycle.withLock { $0.background[gid] }
    }

    /// Remembers that `task` follows the daemon's download `gid`.
    func registerBackground(_ gid: String, task: DownloadTask) {
        lifecycle.withLock { $0.background[gid] = task }
    }

    /// A task for the daemon's download `gid`, made by an earlier process of this session.
    func makeBackgroundTask(gid: String, url: URL?, description: String?) -> DownloadTask {
        let task = makeTask(request: url.map { URLRequest(url: $0) }, completionHandler: nil)
        task.attachedGID = gid
        task.taskDescription = description
        registerBackground(gid, task: task)
        return task
    }

    private func makeTask(request: URLRequest?, resumeData: Data? = nil, destination: URL? = nil,
                          completionHandler: (@Sendable (URL?, URLResponse?, (any Error)?) -> Void)?) -> DownloadTask {
        let identifier = nextIdentifier.add(1, ordering: .relaxed).oldValue
        return DownloadTask(session: self, identifier: identifier, request: request, resumeData: resumeData,
                            destination: destination, completionHandler: completionHandler)
    }

    /// Where a download's bytes and journal go: beside the destination with names derived from
    /// its name (so the final rename is atomic and the same download finds its journal again,
    /// even if the directory was moved), else in the temporary directory under a fresh name.
    /// Every name is resolved in the directory's `PlacementRoot`; no path is taken from resume
    /// data beside a destination.
    func files(for destination: URL?, task: Int, resume: ResumeData? = nil,
               replacing: Bool? = nil) throws(HaulError) -> DownloadOperation.Files {
        let replaces = replacing ?? configuration.replacesExistingFiles
        if let destination, resume == nil || resume?.destination != nil {
            // Beside the destination; for a resume, the partial file is found by the
            // destination's name, never by a path in the resume data.
            let name = destination.lastPathComponent
            guard PlacementRoot.isValidName(name) else { throw .invalidFileName(name) }
            let root = try PlacementRoot(directory: destination.deletingLastPathComponent().path)
            return .init(root: root, partName: SideNames.partial(for: name), journalName: SideNames.journal(for: name),
                         destinationRoot: root, destinationName: name, isBesideDestination: true,
                         replacesDestination: replaces)
        }
        if let resume {
            // The caller's resume data of a download without a destination names a temp file of
            // ours: opened in its directory, without following links, and checked to be the same
            // inode before use.
            let path = URL(fileURLWithPath: resume.tempFile.path)
            let name = path.lastPathComponent
            guard PlacementRoot.isValidName(name), name.hasPrefix("haul-download-"), name.hasSuffix(".tmp") else {
                throw .resumeDataInvalid(reason: "its temp file is not one of Haul's")
            }
            let root = try PlacementRoot(directory: path.deletingLastPathComponent().path)
            guard let destination else {
                return .init(root: root, partName: name, journalName: name + ".journal", destinationRoot: root,
                             destinationName: nil, isBesideDestination: false, replacesDestination: false)
            }
            let target = destination.lastPathComponent
            guard PlacementRoot.isValidName(target) else { throw .invalidFileName(target) }
            return .init(root: root, partName: name, journalName: name + ".journal",
                         destinationRoot: try PlacementRoot(directory: destination.deletingLastPathComponent().path),
                         destinationName: target, isBesideDestination: false,
                         replacesDestination: replaces)
        }
        let random = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let directory = (configuration.temporaryDirectory ?? FileManager.default.temporaryDirectory).path
        let name = "haul-download-\(task)-\(random).tmp"
        let root = try PlacementRoot(directory: directory)
        return .init(root: root, partName: name, journalName: name + ".journal", destinationRoot: root,
                     destinationName: nil, isBesideDestination: false, replacesDestination: false)
    }

    /// The engine settings for one request.
    /// `rateLimit` overrides `maximumBytesPerSecond` for one task.
    func settings(for request: URLRequest, rateLimit: Int64? = nil) throws(HaulError) -> DownloadOperation.Settings {
        let rate = rateLimit ?? configuration.maximumBytesPerSecond
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
        var minimumSpeed = configuration.minimumBytesPerSecond
        if rate > 0 {
            // A connection's share of a rate limit may be slow by design.
            let share = rate / Int64(max(1, configuration.connectionsPerDownload) * 4)
            minimumSpeed = Int(min(Int64(minimumSpeed), max(1, share)))
        }
        options.minimumBytesPerSecond = max(1, minimumSpeed)
        options.bufferSize = configuration.receiveBufferSize
        if rate > 0 {
            // Callbacks of at most 1/20 s of the limit, so the bucket moves in small steps.
            let step = Int(min(Int64(configuration.receiveBufferSize), rate / 20))
            options.bufferSize = max(1024, step)
        }
        options.caFile = configuration.caCertificateFile
        options.verifyTLS = configuration.verifiesTLSCertificates
        options.proxy = configuration.proxy
        options.usesNetrc = configuration.usesNetrc
        options.netrcFile = configuration.netrcFile
        options.cookieFile = configuration.cookieFile
        var settings = DownloadOperation.Settings(
            request: options,
            engine: .init(connections: configuration.connectionsPerDownload,
                          minimumSplit: configuration.minimumSplitSize,
                          maxRetries: configuration.retryLimit,
                          restartsOnRemoteChange: configuration.restartsWhenRemoteFileChanges,
                          seamOverlap: configuration.seamOverlap))
        if configuration.timeoutIntervalForResource > 0, configuration.timeoutIntervalForResource < 365 * 24 * 3600 {
            settings.maxDuration = .milliseconds(Int64(configuration.timeoutIntervalForResource * 1000))
        }
        settings.engine.replacesSlowConnections = configuration.replacesSlowConnections
        settings.engine.mirrorsMayDifferInValidators = configuration.mirrorsServeSameBytes
        settings.engine.slowRatio = configuration.slowConnectionRatio
        settings.engine.slowGrace = .milliseconds(Int(configuration.slowConnectionGracePeriod * 1000))
        settings.syncOnFinish = configuration.syncsBeforeMove
        settings.writesJournal = configuration.writesJournal
        settings.maxBytesPerSecond = rate
        settings.engine.rateLimited = rate > 0
        settings.computesSHA256 = configuration.computesSHA256
        settings.keepsFilesFailingChecksum = configuration.keepsFilesFailingChecksum
        settings.recordsCredentials = configuration.resumeDataIncludesCredentials
        settings.sendsCredentialsToMirrors = configuration.sendsCredentialsToMirrors
        let credentials: Set<String> = ["authorization", "proxy-authorization", "cookie"]
        settings.resumeHeaders = (request.allHTTPHeaderFields ?? [:])
            .filter { configuration.resumeDataIncludesCredentials || !credentials.contains($0.key.lowercased()) }
            .filter { !["range", "if-range"].contains($0.key.lowercased()) }
            .sorted { $0.key < $1.key }.map { [$0.key, $0.value] }
        return settings
    }
}
