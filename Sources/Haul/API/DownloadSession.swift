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
    public var delegate: (any DownloadTaskDelegate)? { lifecycle.withLock { $0.delegate } }
    /// Where delegate and completion-handler calls run (serial unless you gave a concurrent
    /// queue; calls are ordered and never overlap either way).
    public var delegateQueue: OperationQueue { delivery.queue }

    let multi: CurlMulti
    let logger: Logger
    /// The file syscalls downloads use; tests substitute failures (ENOSPC, short writes).
    let syscalls: Syscalls
    let delivery: DelegateDelivery
    private let nextIdentifier = Atomic<Int>(1)

    /// A task the session knows of without keeping it alive.
    private struct WeakTask {
        weak var task: DownloadTask?
    }

    /// The session's tasks and whether it still takes new ones.
    private struct Lifecycle {
        var delegate: (any DownloadTaskDelegate)?
        var description: String?
        /// Tasks made and not ended (weakly: a task nobody holds and nobody started is gone).
        var open: [Int: WeakTask] = [:]
        /// Started tasks, kept alive until they have delivered their end.
        var running: [Int: DownloadTask] = [:]
        var invalidated = false
        /// `didBecomeInvalidWithError` was delivered (or is on its way).
        var invalidationAnnounced = false
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
    ///   - delegate: receives progress and completion of tasks made without a completion handler,
    ///     and answers their questions. As with URLSession, only a `DownloadSessionDelegate` is
    ///     handed files (`didFinishDownloadingTo`); a `DownloadTaskDelegate` (ported from a
    ///     `URLSessionDelegate` or `URLSessionTaskDelegate`) suits tasks with completion handlers.
    ///   - delegateQueue: where delegate calls run; `nil` makes a serial queue.
    public convenience init(configuration: Configuration = .default, delegate: (any DownloadTaskDelegate)? = nil,
                            delegateQueue: OperationQueue? = nil) {
        self.init(configuration: configuration, delegate: delegate, delegateQueue: delegateQueue, syscalls: .system)
    }

    init(configuration: Configuration, delegate: (any DownloadTaskDelegate)? = nil,
         delegateQueue: OperationQueue? = nil, syscalls: Syscalls) {
        self.syscalls = syscalls
        self.configuration = configuration
        self.lifecycle = Mutex(Lifecycle(delegate: delegate))
        self.delivery = DelegateDelivery(queue: delegateQueue)
        self.logger = configuration.logger ?? {
            var quiet = Logger(label: "haul")
            quiet.logLevel = .warning
            return quiet
        }()
        self.multi = CurlMulti(label: "haul.session", maxHostConnections: configuration.connectionsPerHost,
                               logger: logger)
        if configuration.identifier != nil, delegate != nil {
            // A background session made again: take back its tasks and deliver what ended.
            attachBackgroundTasks(announcing: true)
        }
    }

    /// Your description of the session, as `URLSession.sessionDescription`.
    public var sessionDescription: String? {
        get { lifecycle.withLock { $0.description } }
        set { lifecycle.withLock { $0.description = newValue } }
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

    /// The journal a download to `destination` keeps beside it while running (and after it was
    /// cancelled or failed, so the same download can continue): its content is resume data.
    public static func journalURL(for destination: URL) -> URL {
        destination.deletingLastPathComponent().appendingPathComponent(SideNames.journal(for: destination.lastPathComponent))
    }

    /// The partial file a download to `destination` writes beside it until it is complete.
    package static func partialFileURL(for destination: URL) -> URL {
        destination.deletingLastPathComponent().appendingPathComponent(SideNames.partial(for: destination.lastPathComponent))
    }

    // MARK: Invalidation

    /// Takes no new tasks; tasks made before, running or not, still run (also when resumed
    /// later). Once every one of them has ended the delegate hears `didBecomeInvalidWithError`
    /// (nil) and the session lets go of it. Tasks made afterwards fail with
    /// `HaulError.sessionInvalidated`. Ignored by `shared`.
    public func finishTasksAndInvalidate() {
        guard self !== DownloadSession.shared else { return }
        lifecycle.withLock { $0.invalidated = true }
        announceInvalidationIfDone()
    }

    /// Cancels every task and takes no new ones; the delegate hears
    /// `didBecomeInvalidWithError` (nil) once they have reported, then is let go. Ignored by
    /// `shared`.
    public func invalidateAndCancel() {
        guard self !== DownloadSession.shared else { return }
        let open = lifecycle.withLock { state -> [DownloadTask] in
            state.invalidated = true
            return state.open.values.compactMap(\.task)
        }
        for task in open { task.cancel() }
        announceInvalidationIfDone()
    }

    /// A task starts; `false` when the session was invalidated before the task was made.
    func register(_ task: DownloadTask) -> Bool {
        lifecycle.withLock { state in
            guard !state.invalidated || state.open[task.taskIdentifier] != nil else { return false }
            state.running[task.taskIdentifier] = task
            return true
        }
    }

    /// A task has delivered its last callback.
    func unregister(_ task: DownloadTask) {
        let ended = lifecycle.withLock { state -> DownloadTask? in
            state.open[task.taskIdentifier] = nil
            return state.running.removeValue(forKey: task.taskIdentifier)
        }
        _ = ended
        announceInvalidationIfDone()
    }

    /// A task nobody holds any more (never started, or done).
    func taskWentAway(_ identifier: Int) {
        lifecycle.withLock { _ = $0.open.removeValue(forKey: identifier) }
        announceInvalidationIfDone()
    }

    /// After invalidation, once no task made before it is left: `didBecomeInvalidWithError`,
    /// then the delegate is let go.
    private func announceInvalidationIfDone() {
        let delegate = lifecycle.withLock { state -> (any DownloadTaskDelegate)?? in
            state.open = state.open.filter { $0.value.task != nil }
            guard state.invalidated, !state.invalidationAnnounced, state.open.isEmpty, state.running.isEmpty else { return .none }
            state.invalidationAnnounced = true
            return .some(state.delegate)
        }
        guard case .some(let delegate) = delegate else { return }
        delivery.enqueue { [self] in
            delegate?.downloadSession(self, didBecomeInvalidWithError: nil)
            lifecycle.withLock { $0.delegate = nil }
        }
    }

    // MARK: Internal

    /// Tasks made (and still held by someone) or started that have not delivered their end.
    var runningTasks: [DownloadTask] {
        lifecycle.withLock { state in
            var all = state.running
            for (id, weak) in state.open where all[id] == nil { if let task = weak.task { all[id] = task } }
            return Array(all.values)
        }.sorted { $0.taskIdentifier < $1.taskIdentifier }
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

    func makeTask(request: URLRequest?, resumeData: Data? = nil, destination: URL? = nil,
                  delegate: (any DownloadTaskDelegate)? = nil,
                  completionHandler: (@Sendable (URL?, URLResponse?, (any Error)?) -> Void)?) -> DownloadTask {
        let identifier = nextIdentifier.add(1, ordering: .relaxed).oldValue
        let task = DownloadTask(session: self, identifier: identifier, request: request, resumeData: resumeData,
                                destination: destination, completionHandler: completionHandler)
        task.delegate = delegate
        let listener = lifecycle.withLock { state -> (any DownloadTaskDelegate)? in
            guard !state.invalidated else { return nil }
            state.open[identifier] = WeakTask(task: task)
            return state.delegate
        }
        let listeners: [any DownloadTaskDelegate] = [delegate, listener].compactMap { $0 }
            .reduce(into: []) { all, next in if !all.contains(where: { $0 === next }) { all.append(next) } }
        if !listeners.isEmpty {
            delivery.enqueue { [self] in for each in listeners { each.downloadSession(self, didCreateTask: task) } }
        }
        return task
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
        guard method.allSatisfy({ $0.isASCII && ($0.isLetter || $0 == "-" || $0 == "_") }), !method.isEmpty,
              method != "HEAD", method != "CONNECT" else {
            throw .unsupportedRequest(reason: "method \(method) has no body to download")
        }
        guard request.httpBodyStream == nil else {
            throw .unsupportedRequest(reason: "a body stream; give the body as httpBody")
        }
        var options = RequestOptions(url: url.absoluteString)
        options.method = method
        options.body = request.httpBody.map { Array($0) }
        var headers = configuration.additionalHeaders
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
        if method != "GET" {
            // Another method cannot be split, repeated or resumed: one stream, no retries.
            settings.engine.singleStream = true
            settings.engine.maxRetries = 0
            settings.engine.restartsOnRemoteChange = false
            settings.engine.connections = 1
            settings.writesJournal = false
        }
        settings.engine.replacesSlowConnections = configuration.replacesSlowConnections
        settings.engine.chunked = true
        settings.engine.adaptsConnections = configuration.adaptsConnectionCount
        settings.engine.mirrorsMayDifferInValidators = configuration.mirrorsServeSameBytes
        settings.engine.slowRatio = configuration.slowConnectionRatio
        settings.engine.slowGrace = .milliseconds(Int(configuration.slowConnectionGracePeriod * 1000))
        settings.syncOnFinish = configuration.syncsBeforeMove
        settings.writesJournal = configuration.writesJournal && method == "GET"
        settings.maxBytesPerSecond = rate
        settings.engine.rateLimited = rate > 0
        settings.computesSHA256 = configuration.computesSHA256
        settings.keepsFilesFailingChecksum = configuration.keepsFilesFailingChecksum
        settings.recordsCredentials = configuration.resumeDataIncludesCredentials
        settings.sendsCredentialsToMirrors = configuration.sendsCredentialsToMirrors
        settings.usesLinkMirrors = configuration.usesMirrorsFromLinkHeaders
        let credentials: Set<String> = ["authorization", "proxy-authorization", "cookie"]
        settings.resumeHeaders = (request.allHTTPHeaderFields ?? [:])
            .filter { configuration.resumeDataIncludesCredentials || !credentials.contains($0.key.lowercased()) }
            .filter { !["range", "if-range"].contains($0.key.lowercased()) }
            .sorted { $0.key < $1.key }.map { [$0.key, $0.value] }
        return settings
    }
}
