import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One download, shaped like `URLSessionDownloadTask`. Tasks start suspended: call `resume()`.
///
/// Progress reaches the delegates (`didWriteData`), `progress`, the counters and `events` at
/// most about every 100 ms. Two tasks are equal only when they are the same task.
public final class DownloadTask: @unchecked Sendable, Hashable {
    // Unchecked: `lock` guards every stored `var`; the `let`s are Sendable or immutable.

    /// Where a task is in its life (the cases of `URLSessionTask.State`).
    public enum State: Int, Sendable {
        /// Transferring (or waiting to retry, or for `earliestBeginDate`).
        case running = 0
        /// Not started yet, or paused by `suspend()`.
        case suspended = 1
        /// `cancel()` was called; completion follows.
        case canceling = 2
        /// Finished, failed or cancelled; see `error`.
        case completed = 3
    }

    /// The priority a task gets when none is set (0.5), as `URLSessionTask.defaultPriority`.
    public static let defaultPriority: Float = 0.5
    /// The lowest priority (0), as `URLSessionTask.lowPriority`.
    public static let lowPriority: Float = 0
    /// The highest priority (1), as `URLSessionTask.highPriority`.
    public static let highPriority: Float = 1

    /// Identifies the task within its session.
    public let taskIdentifier: Int
    /// The request the task was made with (`nil` for a task made from resume data).
    public let originalRequest: URLRequest?
    /// Progress in bytes: `totalUnitCount` is the length once known.
    public let progress: Progress

    let session: DownloadSession
    let resumeData: Data?
    /// Where the async API wants the file (renamed there, never deleted).
    let destination: URL?
    let completionHandler: (@Sendable (URL?, URLResponse?, (any Error)?) -> Void)?

    let lock = NSLock()
    var _state: State = .suspended
    var _currentRequest: URLRequest?
    /// The first response's head and URL (of the latest start over). `response` and
    /// `probeResponse` are made from it when first asked for: a batch of small files asks for
    /// neither.
    var _firstResponse: (head: ResponseHead, url: URL)? {
        didSet { _madeResponses = nil }
    }
    var _madeResponses: (plain: URLResponse?, probe: HTTPURLResponse?)?
    var _error: (any Error)?
    var _received: Int64 = 0
    /// A resumed task's offset, told once its bytes start to arrive (or at its end): a file
    /// that changed on the server is then told as offset 0 only, as URLSession tells it.
    var _pendingResume: (offset: Int64, expected: Int64)?
    var _expected: Int64 = NSURLSessionTransferSizeUnknown
    var operation: (any DownloadRunner)?
    var ticker: DispatchSourceTimer?
    var finishHook: (@Sendable (Result<(URL, URLResponse), any Error>) -> Void)?
    var streams: [UUID: AsyncThrowingStream<DownloadEvent, any Error>.Continuation] = [:]
    var eventsAttached = false
    var terminal: Result<URL, any Error>?
    var resumeDataHandler: (@Sendable (Data?) -> Void)?
    var _expectedSHA256: String?
    var _sha256: String?
    var _checksumSource: ChecksumSource?
    var _seams: (checked: Int, mismatched: Int) = (0, 0)
    var _badSources: [String] = []
    /// The finished file, for a download that had a destination, when `keepsFinishedFile`
    /// (it holds its directory open until `releaseFinishedFile()`).
    var _finished: FinishedFile?
    var _keepsFinishedFile = false
    var _onReceivedAll: (@Sendable () -> Void)?
    var _metalink: MetalinkRequest?
    var _connections = 0
    var _mirrors: [URL] = []
    var _taskDescription: String?
    var _maximumBytesPerSecond: Int64?
    var _connectionsOverride: Int?
    var _minimumSplitOverride: Int64?
    var _replacesOverride: Bool?
    var _delegate: (any DownloadTaskDelegate)?
    var _priority: Float = DownloadTask.defaultPriority
    var _earliestBeginDate: Date?
    var _clientExpectsToReceive: Int64 = NSURLSessionTransferSizeUnknown
    var _clientExpectsToSend: Int64 = NSURLSessionTransferSizeUnknown
    /// A start waiting for `earliestBeginDate` or for connectivity.
    var pendingStart: DispatchWorkItem?
    /// When `resume()` first ran, and whether the delegate already heard that the task waits
    /// for connectivity.
    var startedAt: Date?
    var announcedWaiting = false
    var connectivityAttempts = 0
    var _attachedGID: String?
    /// Called (on the delegate queue) once the task's end has been delivered.
    var onDelivered: (@Sendable () -> Void)?

    init(session: DownloadSession, identifier: Int, request: URLRequest?, resumeData: Data?,
         destination: URL?, completionHandler: (@Sendable (URL?, URLResponse?, (any Error)?) -> Void)?) {
        self.session = session
        self.taskIdentifier = identifier
        self.originalRequest = request
        self.resumeData = resumeData
        self.destination = destination
        self.completionHandler = completionHandler
        self._currentRequest = request
        self.progress = Progress(totalUnitCount: -1)
    }

    deinit {
        // Later, not here: the last reference may go while the session's lock is held.
        let session = self.session
        let identifier = taskIdentifier
        session.multi.queue.async { session.taskWentAway(identifier) }
    }

    public static func == (lhs: DownloadTask, rhs: DownloadTask) -> Bool { lhs === rhs }

    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }

    // MARK: Properties

    /// This task's own delegate, as `URLSessionTask.delegate`: it hears the task's events before
    /// the session's delegate does, and answers its redirect and authentication questions. Set
    /// it before `resume()`; the task lets go of it when it completes.
    public var delegate: (any DownloadTaskDelegate)? {
        get { lock.withLock { _delegate } }
        set { lock.withLock { _delegate = newValue } }
    }

    /// A hint from 0 (`lowPriority`) to 1 (`highPriority`), as `URLSessionTask.priority`. Haul
    /// runs every resumed task at once; the value is kept for code that reads it back.
    public var priority: Float {
        get { lock.withLock { _priority } }
        set { lock.withLock { _priority = min(1, max(0, newValue)) } }
    }

    /// The task does not start before this date, as `URLSessionTask.earliestBeginDate`: after
    /// `resume()` it is `running` and waits. Set it before `resume()`.
    public var earliestBeginDate: Date? {
        get { lock.withLock { _earliestBeginDate } }
        set { lock.withLock { _earliestBeginDate = newValue } }
    }

    /// Your estimate of the response's size (a hint; `NSURLSessionTransferSizeUnknown` by default).
    public var countOfBytesClientExpectsToReceive: Int64 {
        get { lock.withLock { _clientExpectsToReceive } }
        set { lock.withLock { _clientExpectsToReceive = newValue } }
    }

    /// Your estimate of the request body's size (a hint; `NSURLSessionTransferSizeUnknown` by default).
    public var countOfBytesClientExpectsToSend: Int64 {
        get { lock.withLock { _clientExpectsToSend } }
        set { lock.withLock { _clientExpectsToSend = newValue } }
    }

    /// The request body's size (0 for a GET).
    public var countOfBytesExpectedToSend: Int64 { Int64(originalRequest?.httpBody?.count ?? 0) }

    /// The request body bytes sent: the whole body once the server answered.
    public var countOfBytesSent: Int64 { response == nil ? 0 : countOfBytesExpectedToSend }

    /// Connections for this task instead of the configuration's (the daemon's `split`).
    package var connectionsOverride: Int? {
        get { lock.withLock { _connectionsOverride } }
        set { lock.withLock { _connectionsOverride = newValue } }
    }

    /// The smallest range worth a connection for this task (the daemon's `min-split-size`).
    package var minimumSplitOverride: Int64? {
        get { lock.withLock { _minimumSplitOverride } }
        set { lock.withLock { _minimumSplitOverride = newValue } }
    }

    /// Whether this task may replace a regular file at its destination (the daemon's
    /// `allow-overwrite`), instead of the configuration's `replacesExistingFiles`.
    package var replacesExistingFileOverride: Bool? {
        get { lock.withLock { _replacesOverride } }
        set { lock.withLock { _replacesOverride = newValue } }
    }

    /// This task's receive limit in bytes per second, instead of the configuration's
    /// `maximumBytesPerSecond` (0: none). A change while the task runs applies at once.
    public var maximumBytesPerSecond: Int64? {
        get { lock.withLock { _maximumBytesPerSecond } }
        set {
            let running = lock.withLock { () -> (any DownloadRunner)? in
                _maximumBytesPerSecond = newValue
                return operation
            }
            running?.setRateLimit(newValue ?? session.configuration.maximumBytesPerSecond)
        }
    }

    /// Your description of the task (kept by the daemon for background sessions, so a later
    /// process can tell its tasks apart), as `URLSessionTask.taskDescription`.
    public var taskDescription: String? {
        get { lock.withLock { _taskDescription } }
        set { lock.withLock { _taskDescription = newValue } }
    }

    /// The task's state.
    public var state: State { lock.withLock { _state } }
    /// The request being made now: the original with the URL after redirects.
    public var currentRequest: URLRequest? { lock.withLock { _currentRequest } }

    /// The server's response, as a plain GET of the resource would have it: status `200`, the
    /// whole file's `Content-Length` and the server's other headers (an `HTTPURLResponse`), once
    /// its headers arrived; also on failure, with the failing status (`404`, `401`, …).
    ///
    /// Haul's first request asks for `Range: bytes=0-` to learn whether the file can be split;
    /// the server's literal answer (usually `206`, or `416` for an empty file) is
    /// `probeResponse`.
    public var response: URLResponse? { lock.withLock { _responses.plain } }

    /// The server's answer to the task's first request exactly as it came (`206 Partial Content`
    /// with a `Content-Range` when the server supports ranges).
    public var probeResponse: HTTPURLResponse? { lock.withLock { _responses.probe } }

    /// A header field of the first response (any case), read without making `response`: for a
    /// caller that wants one field of each of thousands of downloads.
    package func firstResponseField(_ name: String) -> String? {
        lock.withLock { _firstResponse?.head.value(of: name) }
    }

    /// Why the task failed; `nil` while running or after success.
    public var error: (any Error)? { lock.withLock { _error } }
    /// Bytes written to the file so far.
    public var countOfBytesReceived: Int64 { lock.withLock { _received } }
    /// The file's length, or `NSURLSessionTransferSizeUnknown` (-1) until known.
    public var countOfBytesExpectedToReceive: Int64 { lock.withLock { _expected } }

    /// The SHA-256 the file must have: 64 hex digits, `sha-256=HEX` or `sha256-BASE64`. Set it
    /// before `resume()`. When `nil`, a `Repr-Digest` or `Digest` header from the server is used
    /// if present. A mismatch fails the task with `HaulError.checksumMismatch`.
    public var expectedSHA256: String? {
        get { lock.withLock { _expectedSHA256 } }
        set { lock.withLock { _expectedSHA256 = newValue } }
    }

    /// The SHA-256 of the downloaded file (lowercase hex), once the task completed successfully
    /// (`nil` when `Configuration.computesSHA256` is off and nothing was expected).
    public var sha256: String? { lock.withLock { _sha256 } }

    /// Other URLs serving the same file. Set before `resume()`. Segments spread over the URL and
    /// its mirrors in proportion to each one's measured speed; a mirror that fails or serves a
    /// different file (length, ETag, Last-Modified) is dropped for this download. So is a mirror
    /// that shares neither a strong ETag nor a Last-Modified with the URL's response, unless
    /// `expectedSHA256` (or the server's digest) will check the whole file: equal lengths alone
    /// do not show that two servers hold the same version.
    public var mirrors: [URL] {
        get { lock.withLock { _mirrors } }
        set { lock.withLock { _mirrors = newValue } }
    }

    /// Connections transferring for this task now (updated with progress).
    public var activeConnections: Int { lock.withLock { _connections } }

    /// What `sha256` was checked against, or `nil` when nothing was expected.
    public var checksumSource: ChecksumSource? { lock.withLock { _checksumSource } }

    /// After success: how many seams (places where the bytes of two responses meet) were
    /// compared, and how many differed (each difference restarted the download as one stream,
    /// so the file is still one whole version).
    public var seamChecks: (checked: Int, mismatched: Int) { lock.withLock { _seams } }

    /// The daemon's GID of a background task made by an earlier process (set when attaching).
    var attachedGID: String? {
        get { lock.withLock { _attachedGID } }
        set { lock.withLock { _attachedGID = newValue } }
    }

    /// After a metalink download with piece hashes: the sources (URLs, without credentials)
    /// that delivered bytes of a piece that failed its hash. Those pieces were fetched again
    /// elsewhere; a source blamed twice was dropped.
    public var sourcesWithBadPieces: [String] { lock.withLock { _badSources } }

    /// The metalink file this task downloads, and where (set at creation).
    var metalink: MetalinkRequest? {
        get { lock.withLock { _metalink } }
        set { lock.withLock { _metalink = newValue } }
    }

    // MARK: Control

    /// Starts the task, or continues it after `suspend()`. A task with an `earliestBeginDate`
    /// in the future is `running` and starts at that date.
    public func resume() {
        let action: (start: Bool, continue: (any DownloadRunner)?) = lock.withLock {
            guard _state == .suspended else { return (false, nil) }
            _state = .running
            if let operation { return (false, operation) }
            if pendingStart != nil { return (false, nil) }
            return (true, nil)
        }
        if action.start {
            let delay = earliestBeginDate.map { $0.timeIntervalSinceNow } ?? 0
            if delay > 0 {
                scheduleStart(after: delay)
            } else {
                start()
            }
        } else if let operation = action.continue {
            operation.resume()
            session.multi.queue.async { self.startTicker() }
        }
    }

    /// Pauses every segment; each keeps its range (and connection, if the server waits).
    public func suspend() {
        let operation: (any DownloadRunner)? = lock.withLock {
            guard _state == .running else { return nil }
            _state = .suspended
            return self.operation
        }
        guard let operation else { return }
        operation.suspend()
        session.multi.queue.async { self.stopTicker() }
    }

    /// Cancels the task: it completes with `URLError.cancelled`.
    public func cancel() {
        let operation: (any DownloadRunner)?? = lock.withLock {
            guard _state == .running || _state == .suspended else { return .none }
            _state = .canceling
            pendingStart?.cancel()
            pendingStart = nil
            return .some(self.operation)
        }
        switch operation {
        case .none: return
        case .some(.some(let operation)): operation.cancel(producingResumeData: false)
        case .some(.none): session.multi.queue.async { self.finished(.failure(DownloadFailure(error: .cancelled))) }
        }
    }

    /// Cancels the task and hands back data to continue it later with
    /// `downloadTask(withResumeData:)`, or `nil` when it cannot be continued (the server has no
    /// range support or validators, or the length is unknown). The partial file is kept for it.
    public func cancel(byProducingResumeData completionHandler: @escaping @Sendable (Data?) -> Void) {
        let operation: (any DownloadRunner)?? = lock.withLock {
            guard _state == .running || _state == .suspended else { return .none }
            _state = .canceling
            resumeDataHandler = completionHandler
            pendingStart?.cancel()
            pendingStart = nil
            return .some(self.operation)
        }
        switch operation {
        case .none: session.delivery.enqueue { completionHandler(nil) }
        case .some(.some(let operation)): operation.cancel(producingResumeData: true)
        case .some(.none): session.multi.queue.async { self.finished(.failure(DownloadFailure(error: .cancelled))) }
        }
    }

    /// Cancels the task and returns data to continue it later, or `nil` when it cannot be
    /// continued.
    public func cancelByProducingResumeData() async -> Data? {
        await withCheckedContinuation { continuation in
            cancel(byProducingResumeData: { continuation.resume(returning: $0) })
        }
    }

    /// Starts the task after `delay` seconds unless it was cancelled meanwhile.
    func scheduleStart(after delay: TimeInterval) {
        let item = DispatchWorkItem { [self] in
            let due = lock.withLock { () -> Bool in
                guard pendingStart != nil else { return false }
                pendingStart = nil
                // Suspended meanwhile: the next `resume()` starts it.
                return _state == .running
            }
            if due { start() }
        }
        lock.withLock { pendingStart = item }
        session.multi.queue.asyncAfter(deadline: .now() + delay, execute: item)
    }
}
