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
/// Progress reaches the delegate (`didWriteData`), `progress`, the counters and `events` at most
/// about every 100 ms.
public final class DownloadTask: @unchecked Sendable {
    // Unchecked: `lock` guards every stored `var`; the `let`s are Sendable or immutable.

    /// Where a task is in its life (the cases of `URLSessionTask.State`).
    public enum State: Int, Sendable {
        /// Transferring (or waiting to retry).
        case running = 0
        /// Not started yet, or paused by `suspend()`.
        case suspended = 1
        /// `cancel()` was called; completion follows.
        case canceling = 2
        /// Finished, failed or cancelled; see `error`.
        case completed = 3
    }

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

    private let lock = NSLock()
    private var _state: State = .suspended
    private var _currentRequest: URLRequest?
    private var _response: URLResponse?
    private var _error: (any Error)?
    private var _received: Int64 = 0
    private var _expected: Int64 = NSURLSessionTransferSizeUnknown
    private var operation: (any DownloadRunner)?
    private var ticker: DispatchSourceTimer?
    private var finishHook: (@Sendable (Result<(URL, HTTPURLResponse), any Error>) -> Void)?
    private var streams: [UUID: AsyncThrowingStream<DownloadEvent, any Error>.Continuation] = [:]
    private var eventsAttached = false
    private var terminal: Result<URL, any Error>?
    private var resumeDataHandler: (@Sendable (Data?) -> Void)?
    private var _expectedSHA256: String?
    private var _sha256: String?
    private var _checksumSource: ChecksumSource?
    private var _seams: (checked: Int, mismatched: Int) = (0, 0)
    private var _badSources: [String] = []
    private var _connections = 0
    private var _mirrors: [URL] = []
    private var _taskDescription: String?
    private var _maximumBytesPerSecond: Int64?
    private var _connectionsOverride: Int?
    private var _minimumSplitOverride: Int64?
    private var _replacesOverride: Bool?

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

    // MARK: Properties

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
    /// The server's response (an `HTTPURLResponse`), once its headers arrived; also on failure.
    public var response: URLResponse? { lock.withLock { _response } }
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
    /// different file (length, ETag, Last-Modified) is dropped for this download.
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

    /// After a metalink download with piece hashes: the sources (URLs, without credentials)
    /// that delivered bytes of a piece that failed its hash. Those pieces were fetched again
    /// elsewhere; a source blamed twice was dropped.
    public var sourcesWithBadPieces: [String] { lock.withLock { _badSources } }

    // MARK: Control

    /// Starts the task, or continues it after `suspend()`.
    public func resume() {
        let action: (start: Bool, continue: (any DownloadRunner)?) = lock.withLock {
            guard _state == .suspended else { return (false, nil) }
            _state = .running
            if let operation { return (false, operation) }
            return (true, nil)
        }
        if action.start {
            start()
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

    // MARK: Running

    private func start() {
        guard session.register(self) else {
            session.multi.queue.async { self.finished(.failure(DownloadFailure(error: .sessionInvalidated))) }
            return
        }
        let operation: any DownloadRunner
        let resume: ResumeData?
        do throws(HaulError) {
            (operation, resume) = try makeOperation()
        } catch {
            session.multi.queue.async { self.finished(.failure(DownloadFailure(error: error))) }
            return
        }
        let fallbackURL = resume?.url ?? originalRequest?.url
        operation.setCompletion { [self] result in finished(result) }
        operation.onResponse = { [self] head, effective in
            received(head, url: effective.flatMap(URL.init(string:)) ?? fallbackURL ?? URL(fileURLWithPath: "/"))
        }
        operation.onRestart = { [self] _ in restarted() }
        lock.withLock { self.operation = operation }
        if let resume {
            let trusted = resume.trustedRanges(currentBootID: currentBootID())
            let done = trusted.reduce(0) { $0 + $1.count64 }
            let offset = trusted.first.map { $0.lowerBound == 0 ? $0.upperBound : 0 } ?? 0
            lock.withLock {
                _received = done
                _expected = resume.length
            }
            progress.totalUnitCount = resume.length
            progress.completedUnitCount = done
            announceResume(offset: offset, expected: resume.length)
        }
        operation.start()
        session.multi.queue.async { self.startTicker() }
    }

    /// The operation for a new download, or for resume data after checking it and its file.
    private func makeOperation() throws(HaulError) -> (any DownloadRunner, ResumeData?) {
        var expected: SHA256Digest?
        if let text = expectedSHA256 {
            guard let digest = SHA256Digest(expected: text) else { throw .invalidChecksum(text) }
            expected = digest
        }
        if let identifier = session.configuration.identifier {
            guard metalink == nil else {
                // The daemon would get the URLs without the metalink's hashes: refuse rather than
                // download unverified.
                throw .unsupportedRequest(reason: "a background session cannot take a metalink; download it in this "
                    + "process, or hand it to the daemon with aria2.addMetalink")
            }
            return (try backgroundOperation(identifier: identifier, expected: expected), nil)
        }
        guard let resumeData else {
            guard let request = originalRequest else { throw .invalidURL("(no URL)") }
            var settings = try session.settings(for: request, rateLimit: maximumBytesPerSecond)
            applyOverrides(to: &settings)
            settings.expectedSHA256 = expected
            try applyMirrors(to: &settings)
            applyMetalink(to: &settings)
            var files = try metalinkFiles(resume: nil)
            if files == nil {
                files = try session.files(for: destination, task: taskIdentifier, replacing: replacesExistingFileOverride)
            }
            return (DownloadOperation(multi: session.multi, settings: settings, files: files!, logger: session.logger,
                                      syscalls: session.syscalls), nil)
        }
        let resume = try ResumeData(resumeData)
        var resolved = try metalinkFiles(resume: resume)
        if resolved == nil {
            resolved = try session.files(for: destination, task: taskIdentifier, resume: resume,
                                         replacing: replacesExistingFileOverride)
        }
        let files = resolved!
        try Self.checkPartialFile(of: resume, files: files)
        var request = URLRequest(url: resume.url)
        for header in resume.headers { request.addValue(header[1], forHTTPHeaderField: header[0]) }
        lock.withLock { _currentRequest = request }
        var settings = try session.settings(for: request, rateLimit: maximumBytesPerSecond)
        applyOverrides(to: &settings)
        settings.expectedSHA256 = expected
        try applyMirrors(to: &settings)
        applyMetalink(to: &settings)
        return (DownloadOperation(multi: session.multi, settings: settings, files: files, resume: resume,
                                  logger: session.logger, syscalls: session.syscalls), resume)
    }

    /// The daemon's per-download settings, where it gave them.
    private func applyOverrides(to settings: inout DownloadOperation.Settings) {
        if let connections = connectionsOverride { settings.engine.connections = max(1, connections) }
        if let split = minimumSplitOverride, split > 0 {
            settings.engine.minimumSplit = split
            settings.engine.endgameMinimumTail = max(1, split / 8)
        }
    }

    private func applyMirrors(to settings: inout DownloadOperation.Settings) throws(HaulError) {
        let mirrors = self.mirrors
        for mirror in mirrors {
            guard let scheme = mirror.scheme?.lowercased(), scheme == "http" || scheme == "https", mirror.host != nil else {
                throw .invalidURL(mirror.absoluteString)
            }
        }
        settings.mirrorURLs = mirrors.map(\.absoluteString)
        settings.engine.mirrors = 1 + mirrors.count
    }

    /// For a background session: the download queued in (or, for an attached task, followed in)
    /// the daemon.
    private func backgroundOperation(identifier: String, expected: SHA256Digest?) throws(HaulError) -> RemoteDownload {
        guard completionHandler == nil else {
            throw .unsupportedRequest(reason: "background sessions deliver through a delegate; completion handlers are not supported")
        }
        guard let endpoint = DaemonEndpoint.find(stateDirectory: session.configuration.daemonStateDirectory) else {
            throw .unsupportedRequest(reason: "no haul daemon is running for background session '\(identifier)'; "
                + "start one with: haul daemon --dir DIR")
        }
        let connection = DaemonConnection(endpoint: endpoint)
        if let gid = attachedGID { return RemoteDownload(connection: connection, queue: session.multi.queue, gid: gid) }
        let session = self.session
        guard resumeData == nil, destination == nil, let url = originalRequest?.url else {
            throw .unsupportedRequest(reason: "background tasks download a URL into the daemon's directory "
                + "(no destination or resume data)")
        }
        var options = ["haul-session": identifier]
        if let description = taskDescription { options["haul-description"] = description }
        if let expected { options["checksum"] = "sha-256=\(expected.hex)" }
        for (name, value) in originalRequest?.allHTTPHeaderFields ?? [:] where !["range", "if-range"].contains(name.lowercased()) {
            options["header"] = "\(name): \(value)"
        }
        let remote = RemoteDownload(connection: connection, queue: session.multi.queue,
                                    uris: [url.absoluteString] + mirrors.map(\.absoluteString), options: options)
        remote.onGID = { [unowned self] gid in session.registerBackground(gid, task: self) }
        return remote
    }

    /// The daemon's GID of a background task made by an earlier process (set when attaching).
    var attachedGID: String? {
        get { lock.withLock { _attachedGID } }
        set { lock.withLock { _attachedGID = newValue } }
    }
    private var _attachedGID: String?
    /// The metalink file this task downloads, and where (set at creation).
    var metalink: MetalinkRequest? {
        get { lock.withLock { _metalink } }
        set { lock.withLock { _metalink = newValue } }
    }
    private var _metalink: MetalinkRequest?
    /// Called (on the delegate queue) once the task's end has been delivered.
    var onDelivered: (@Sendable () -> Void)?

    /// The partial file must be there, be the same file, and be as long as recorded; it is
    /// opened in its directory without following links, as the download will open it.
    static func checkPartialFile(of resume: ResumeData, files: DownloadOperation.Files) throws(HaulError) {
        do throws(HaulError) {
            let file = try files.root.openExisting(files.partName, displayPath: files.displayPath)
            defer { file.close() }
            try DownloadOperation.check(file, against: resume)
        } catch {
            switch error {
            case .fileSystem(_, _, let code) where code == ENOENT:
                throw .resumeDataInvalid(reason: "the partial file \(files.partPath) is missing")
            case .resumeDataInvalid, .fileInUse:
                throw error
            default:
                throw .resumeDataInvalid(reason: "the partial file cannot be used: \(error)")
            }
        }
    }

    /// Tells the delegate and `events` where the download continues.
    private func announceResume(offset: Int64, expected: Int64) {
        yield(.resumed(offset: offset, expectedTotalBytes: expected))
        guard completionHandler == nil, let delegate = session.delegate else { return }
        let session = self.session
        session.delivery.enqueue {
            delegate.downloadSession(session, downloadTask: self, didResumeAtOffset: offset, expectedTotalBytes: expected)
        }
    }

    /// The file changed on the server and the download started over (on the session queue).
    private func restarted() {
        lock.withLock {
            _received = 0
            _expected = NSURLSessionTransferSizeUnknown
        }
        progress.totalUnitCount = -1
        progress.completedUnitCount = 0
        announceResume(offset: 0, expected: NSURLSessionTransferSizeUnknown)
    }

    /// The probe's response arrived (on the session queue).
    private func received(_ head: ResponseHead, url: URL) {
        var fields: [String: String] = [:]
        for field in head.fields { fields[field.name] = field.value }
        let response = HTTPURLResponse(url: url, statusCode: head.status, httpVersion: "HTTP/1.1", headerFields: fields)
        lock.withLock {
            _response = response
            if var request = _currentRequest, request.url != url {
                request.url = url
                _currentRequest = request
            }
        }
    }

    private func startTicker() {
        dispatchPrecondition(condition: .onQueue(session.multi.queue))
        guard ticker == nil, state == .running else { return }
        let timer = DispatchSource.makeTimerSource(queue: session.multi.queue)
        timer.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100), leeway: .milliseconds(20))
        timer.setEventHandler { [weak self] in self?.tick() }
        ticker = timer
        timer.activate()
    }

    private func stopTicker() {
        ticker?.cancel()
        ticker = nil
    }

    /// Reports progress if bytes were written since the last report (on the session queue).
    private func tick() {
        guard let operation = lock.withLock({ self.operation }) else { return }
        let (done, length, connections) = operation.progress
        let expected = length ?? NSURLSessionTransferSizeUnknown
        let delta: Int64 = lock.withLock {
            _connections = connections
            let delta = done - _received
            guard delta > 0 || (expected != _expected) else { return 0 }
            _received = max(_received, done)
            _expected = expected
            return delta
        }
        guard delta > 0 else { return }
        progress.totalUnitCount = expected
        progress.completedUnitCount = done
        yield(.progress(totalBytesWritten: done, totalBytesExpectedToWrite: expected))
        guard completionHandler == nil, let delegate = session.delegate else { return }
        let session = self.session
        session.delivery.enqueue {
            delegate.downloadSession(session, downloadTask: self, didWriteData: delta, totalBytesWritten: done,
                                     totalBytesExpectedToWrite: expected)
        }
    }

    /// The operation ended (on the session queue): report progress, then the outcome.
    private func finished(_ result: Result<DownloadResult, DownloadFailure>) {
        tick()
        stopTicker()
        let remote = lock.withLock { operation as? RemoteDownload }
        defer {
            // After the last callback has been delivered, the session may let go of its delegate;
            // a background task's end is then acknowledged to the daemon (exactly once).
            let session = self.session
            let delivered = onDelivered
            session.delivery.enqueue {
                remote?.acknowledge()
                delivered?()
                session.unregister(self)
            }
        }
        let url = currentRequest?.url ?? originalRequest?.url
        switch result {
        case .success(let download):
            let location = URL(fileURLWithPath: download.path)
            let (response, hook, keep) = lock.withLock {
                _state = .completed
                _connections = 0
                _sha256 = download.sha256
                _checksumSource = download.checksumSource
                _seams = (download.seamsChecked, download.seamMismatches)
                _badSources = download.badSources
                _expected = download.length
                progress.totalUnitCount = download.length
                progress.completedUnitCount = download.length
                operation = nil
                return (_response, finishHook, eventsAttached || destination != nil || finishHook != nil)
            }
            deliverSuccess(location: location, response: response, hook: hook,
                           unmoved: keep ? nil : download.handedOver)
        case .failure(let failure):
            let error = failure.error.publicError(url: url, resumeData: failure.resumeData)
            let (response, hook, resumeHandler) = lock.withLock {
                _state = .completed
                _connections = 0
                _error = error
                operation = nil
                defer { resumeDataHandler = nil }
                return (_response, finishHook, resumeDataHandler)
            }
            hook?(.failure(error))
            finishEvents(.failure(error))
            let session = self.session
            if let resumeHandler {
                let data = failure.resumeData
                session.delivery.enqueue { resumeHandler(data) }
            }
            if let handler = completionHandler {
                session.delivery.enqueue { handler(nil, response, error) }
            } else if let delegate = session.delegate {
                session.delivery.enqueue { delegate.downloadSession(session, task: self, didCompleteWithError: error) }
            }
        }
    }

    private func deliverSuccess(location: URL, response: URLResponse?,
                                hook: (@Sendable (Result<(URL, HTTPURLResponse), any Error>) -> Void)?,
                                unmoved: (root: PlacementRoot, name: String)?) {
        if let hook {
            let http = (response as? HTTPURLResponse)
                ?? HTTPURLResponse(url: originalRequest?.url ?? location, statusCode: 200, httpVersion: "HTTP/1.1",
                                   headerFields: [:])!
            hook(.success((location, http)))
        }
        finishEvents(.success(location))
        let session = self.session
        let handler = completionHandler
        let delegate = hook == nil ? session.delegate : nil
        session.delivery.enqueue {
            if let handler {
                handler(location, response, nil)
            } else if let delegate {
                delegate.downloadSession(session, downloadTask: self, didFinishDownloadingTo: location)
            }
            // Valid only during the call, as in Foundation: remove what was not moved.
            if let unmoved { unmoved.root.remove(unmoved.name) }
            if handler == nil, let delegate {
                delegate.downloadSession(session, task: self, didCompleteWithError: nil)
            }
        }
    }

    // MARK: Async support

    /// Sets the hook the async API completes through (before `resume()`).
    func setFinishHook(_ hook: @escaping @Sendable (Result<(URL, HTTPURLResponse), any Error>) -> Void) {
        lock.withLock { finishHook = hook }
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

    private func yield(_ event: DownloadEvent) {
        let continuations = lock.withLock { Array(streams.values) }
        for continuation in continuations { continuation.yield(event) }
    }

    private func finishEvents(_ result: Result<URL, any Error>) {
        let continuations = lock.withLock {
            terminal = result
            let all = Array(streams.values)
            streams.removeAll()
            return all
        }
        for continuation in continuations { Self.end(continuation, with: result) }
    }

    /// Ends an event stream: `.finished` then the end, or the error.
    private static func end(_ continuation: AsyncThrowingStream<DownloadEvent, any Error>.Continuation,
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
