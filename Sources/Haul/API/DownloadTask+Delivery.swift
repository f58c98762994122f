import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a task tells its delegates, completion handler, async caller and `events`, on the
/// session queue; delegate calls go through the session's ordered delivery.
extension DownloadTask {
    /// Who hears this task's events: its own delegate, then the session's (once when they are
    /// the same object). A task with a completion handler tells the session's delegate nothing
    /// but its metrics, as in URLSession.
    func listeners(metrics: Bool = false) -> [any DownloadTaskDelegate] {
        var all: [any DownloadTaskDelegate] = []
        if let own = delegate { all.append(own) }
        if metrics || completionHandler == nil, let shared = session.delegate, !all.contains(where: { $0 === shared }) {
            all.append(shared)
        }
        return all
    }

    /// The delegate that answers a question for this task: its own, else the session's.
    var answeringDelegate: (any DownloadTaskDelegate)? { delegate ?? session.delegate }

    /// Calls `body` with each listener on the delegate queue.
    func notify(metrics: Bool = false, _ body: @escaping @Sendable (any DownloadTaskDelegate) -> Void) {
        let listeners = self.listeners(metrics: metrics)
        guard !listeners.isEmpty else { return }
        session.delivery.enqueue { for listener in listeners { body(listener) } }
    }

    /// Tells the delegates and `events` where the download continues.
    func announceResume(offset: Int64, expected: Int64) {
        yield(.resumed(offset: offset, expectedTotalBytes: expected))
        let session = self.session
        notify { $0.downloadSession(session, downloadTask: self, didResumeAtOffset: offset, expectedTotalBytes: expected) }
    }

    /// Tells a resumed task's offset, once.
    func tellPendingResume() {
        let pending: (offset: Int64, expected: Int64)? = lock.withLock {
            defer { _pendingResume = nil }
            return _pendingResume
        }
        if let pending { announceResume(offset: pending.offset, expected: pending.expected) }
    }

    /// The file changed on the server and the download started over (on the session queue).
    func restarted() {
        lock.withLock {
            _received = 0
            _expected = NSURLSessionTransferSizeUnknown
            _pendingResume = nil
        }
        progress.totalUnitCount = -1
        progress.completedUnitCount = 0
        announceResume(offset: 0, expected: NSURLSessionTransferSizeUnknown)
    }

    /// The first request's response arrived (on the session queue): kept as it came
    /// (`probeResponse`) and as a plain GET would have had it (`response`).
    func received(_ head: ResponseHead, url: URL) {
        lock.withLock {
            _firstResponse = (head, url)
            if var request = _currentRequest, request.url != url {
                request.url = url
                _currentRequest = request
            }
        }
    }

    /// The task's response (as URLSession's: a plain `200` for a range answer that stands for
    /// the whole resource) and the server's literal answer, made once from the first response
    /// head. Called with `lock` held.
    var _responses: (plain: URLResponse?, probe: HTTPURLResponse?) {
        if let made = _madeResponses { return made }
        guard let (head, url) = _firstResponse else { return (nil, nil) }
        let made: (plain: URLResponse?, probe: HTTPURLResponse?) = (
            HTTPURLResponse(url: url, statusCode: Self.plainStatus(head), httpVersion: "HTTP/1.1",
                            headerFields: Self.plainFields(head)),
            HTTPURLResponse(url: url, statusCode: head.status, httpVersion: "HTTP/1.1", headerFields: head.headerFields))
        _madeResponses = made
        return made
    }

    /// A range answer to the first request stands for the resource's `200`: a `206` that names
    /// the whole length or starts at byte 0 (a resumed task's first request starts later), or
    /// the `416` an empty file gets.
    static func plainStatus(_ head: ResponseHead) -> Int {
        switch head.status {
        case 206 where head.contentRange?.first == 0 || head.contentRange?.completeLength != nil: return 200
        case 416 where head.contentRange?.completeLength == 0: return 200
        default: return head.status
        }
    }

    /// The headers of the plain `200`: no `Content-Range`, and the whole length as
    /// `Content-Length` (left out when the server did not say it).
    static func plainFields(_ head: ResponseHead) -> [String: String] {
        var fields = head.headerFields
        guard plainStatus(head) != head.status else { return fields }
        for name in fields.keys where ["content-range", "content-length"].contains(name.lowercased()) {
            fields[name] = nil
        }
        if let length = head.contentRange?.completeLength { fields["Content-Length"] = String(length) }
        return fields
    }

    func startTicker() {
        dispatchPrecondition(condition: .onQueue(session.multi.queue))
        guard ticker == nil, state == .running else { return }
        let timer = DispatchSource.makeTimerSource(queue: session.multi.queue)
        timer.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100), leeway: .milliseconds(20))
        timer.setEventHandler { [weak self] in self?.tick() }
        ticker = timer
        timer.activate()
    }

    func stopTicker() {
        ticker?.cancel()
        ticker = nil
    }

    /// Reports progress if bytes were written since the last report (on the session queue).
    func tick() {
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
        // New bytes: the server let the resumed ones stand.
        tellPendingResume()
        progress.totalUnitCount = expected
        progress.completedUnitCount = done
        yield(.progress(totalBytesWritten: done, totalBytesExpectedToWrite: expected))
        let session = self.session
        notify {
            $0.downloadSession(session, downloadTask: self, didWriteData: delta, totalBytesWritten: done,
                               totalBytesExpectedToWrite: expected)
        }
    }

    /// The operation ended (on the session queue): report progress, metrics, then the outcome.
    func finished(_ result: Result<DownloadResult, DownloadFailure>) {
        if case .failure(let failure) = result, waitsForConnectivity(after: failure) {
            waitForConnectivity()
            return
        }
        tick()
        stopTicker()
        if case .success = result {
            tellPendingResume()
        } else {
            lock.withLock { _pendingResume = nil }
        }
        let (remote, runner, began) = lock.withLock { (operation as? RemoteDownload, operation, startedAt) }
        let session = self.session
        let collected = runner?.collectedMetrics ?? .init()
        let metrics = DownloadTaskMetrics(transactionMetrics: collected.transactions,
                                          taskInterval: DateInterval(start: began ?? Date(), end: Date()),
                                          redirectCount: collected.redirects)
        // As URLSession: after the file on success (didFinishDownloadingTo, metrics, complete),
        // first on failure.
        if case .failure = result {
            notify(metrics: true) { $0.downloadSession(session, task: self, didFinishCollecting: metrics) }
        }
        defer {
            // After the last callback has been delivered, the session may let go of its delegate;
            // a background task's end is then acknowledged to the daemon (exactly once).
            let delivered = onDelivered
            session.delivery.enqueue {
                remote?.acknowledge()
                delivered?()
                self.delegate = nil
                session.unregister(self)
            }
        }
        let url = currentRequest?.url ?? originalRequest?.url
        switch result {
        case .success(let download):
            let location = URL(fileURLWithPath: download.path)
            let (hook, keep) = lock.withLock {
                _state = .completed
                _connections = 0
                _sha256 = download.sha256
                _checksumSource = download.checksumSource
                _seams = (download.seamsChecked, download.seamMismatches)
                _badSources = download.badSources
                if _keepsFinishedFile { _finished = download.finished }
                _expected = download.length
                progress.totalUnitCount = download.length
                progress.completedUnitCount = download.length
                operation = nil
                return (finishHook, eventsAttached || destination != nil || finishHook != nil)
            }
            deliverSuccess(location: location, hook: hook,
                           unmoved: keep ? nil : download.handedOver, metrics: metrics)
        case .failure(let failure):
            let error = failure.error.publicError(url: url, resumeData: failure.resumeData)
            let (response, hook, resumeHandler, heard) = lock.withLock {
                _state = .completed
                _connections = 0
                _error = error
                operation = nil
                defer { resumeDataHandler = nil }
                return (_responses.plain, finishHook, resumeDataHandler,
                        finishHook != nil || eventsAttached || resumeDataHandler != nil || completionHandler != nil)
            }
            if let kept = failure.keptTempFile, failure.resumeData != nil, !heard, listeners().isEmpty {
                // Nobody can receive the resume data: a partial file in the temporary directory
                // would only take space.
                kept.root.remove(kept.journalName)
                kept.root.remove(kept.partName)
            }
            hook?(.failure(error))
            finishEvents(.failure(error))
            if let resumeHandler {
                let data = failure.resumeData
                session.delivery.enqueue { resumeHandler(data) }
            }
            if let handler = completionHandler {
                session.delivery.enqueue { handler(nil, response, error) }
            }
            notify { $0.downloadSession(session, task: self, didCompleteWithError: error) }
        }
    }

    func deliverSuccess(location: URL, hook: (@Sendable (Result<(URL, URLResponse), any Error>) -> Void)?,
                        unmoved: (root: PlacementRoot, name: String)?, metrics: DownloadTaskMetrics) {
        let handler = completionHandler
        // Made only for those who receive it.
        let response = hook != nil || handler != nil ? self.response : nil
        if let hook {
            let plain = response
                ?? HTTPURLResponse(url: originalRequest?.url ?? location, statusCode: 200, httpVersion: "HTTP/1.1",
                                   headerFields: [:])!
            hook(.success((location, plain)))
        }
        finishEvents(.success(location))
        let session = self.session
        // The file goes to the task's own delegate when it is a download delegate, else to the
        // session's; never to a delegate when a handler, the async API or `events` takes it.
        let receiver: (any DownloadSessionDelegate)? = hook == nil && handler == nil
            ? (delegate as? any DownloadSessionDelegate) ?? (session.delegate as? any DownloadSessionDelegate) : nil
        let listeners = self.listeners()
        let collectors = self.listeners(metrics: true)
        session.delivery.enqueue {
            if let handler {
                handler(location, response, nil)
            } else if let receiver {
                receiver.downloadSession(session, downloadTask: self, didFinishDownloadingTo: location)
            }
            // Valid only during the call, as in Foundation: remove what was not moved.
            if let unmoved { unmoved.root.remove(unmoved.name) }
            for collector in collectors {
                collector.downloadSession(session, task: self, didFinishCollecting: metrics)
            }
            for listener in listeners {
                listener.downloadSession(session, task: self, didCompleteWithError: nil)
            }
        }
    }
}
