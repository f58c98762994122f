import CCurl
import Dispatch
import Logging

/// What a finished download produced.
struct DownloadResult: Sendable {
    /// Where the bytes are: the destination, or the temp file when none was given.
    var path: String
    var length: Int64
    /// The first response head (status, headers) and the URL after redirects.
    var head: ResponseHead?
    var effectiveURL: String?
    /// Connections opened over the whole download (requests made).
    var requests: Int
}

/// Runs one download: owns its state machine, temp file and curl handles, and is the only place
/// that turns the machine's actions into libcurl calls and file writes.
///
/// Confined to the session's queue (`multi.queue`).
final class DownloadOperation: @unchecked Sendable {
    // Unchecked: every mutable property is used on `multi.queue` only.
    struct Settings: Sendable {
        var request: RequestOptions
        var engine: DownloadStateMachine.Options
        var retryBase: Duration = .milliseconds(250)
        var retryCap: Duration = .seconds(30)
        /// `fdatasync` before the final rename, so a completed file survives a power cut.
        var syncOnFinish = true
    }

    private let multi: CurlMulti
    private let settings: Settings
    private let tempPath: String
    private let destinationPath: String?
    private let logger: Logger
    private let syscalls: Syscalls
    private var machine: DownloadStateMachine
    private var file: DataFile?
    private var easies: [Int: CurlEasy] = [:]
    private var writeErrors: [Int: HaulError] = [:]
    private var retryTimers: [Int: DispatchWorkItem] = [:]
    private var effectiveURL: String?
    private var requestCount = 0
    private var completion: ((Result<DownloadResult, HaulError>) -> Void)?
    /// Called on the queue with the probe's final response head and the URL after redirects.
    var onResponse: (ResponseHead, String?) -> Void = { _, _ in }
    private var isSuspended = false
    /// Requests that came due while suspended; started on resume.
    private var deferredStarts: [DownloadStateMachine.Request] = []
    /// Holds the operation alive from `start()` until it finishes.
    private var running: DownloadOperation?

    init(multi: CurlMulti, settings: Settings, tempPath: String, destinationPath: String?,
         logger: Logger, syscalls: Syscalls = .system,
         completion: @escaping (Result<DownloadResult, HaulError>) -> Void) {
        self.multi = multi
        self.settings = settings
        self.tempPath = tempPath
        self.destinationPath = destinationPath
        self.logger = logger
        self.syscalls = syscalls
        self.machine = DownloadStateMachine(options: settings.engine)
        self.completion = completion
    }

    /// Bytes on disk so far and the total, when known (read on the queue, for progress).
    var progress: (done: Int64, expected: Int64?) { (machine.plan.bytesDone, machine.plan.length) }
    var liveConnections: Int { easies.count }

    /// Replaces the completion handler (before `start()`).
    func setCompletion(_ completion: @escaping (Result<DownloadResult, HaulError>) -> Void) {
        self.completion = completion
    }

    func start() {
        multi.queue.async { [self] in
            guard completion != nil, !machine.isFinished else { return }
            running = self
            do throws(HaulError) {
                file = try DataFile(creating: tempPath, calls: syscalls)
            } catch {
                finish(.failure(error))
                return
            }
            run(machine.start())
        }
    }

    func cancel() {
        multi.queue.async { [self] in run(machine.cancel()) }
    }

    /// Pauses every transfer; each keeps its range and connection. New requests wait.
    func suspend() {
        multi.queue.async { [self] in
            guard !isSuspended else { return }
            isSuspended = true
            for easy in easies.values { multi.setPaused(easy, true) }
        }
    }

    /// Continues after `suspend()`.
    func resume() {
        multi.queue.async { [self] in
            guard isSuspended else { return }
            isSuspended = false
            for easy in Array(easies.values) { multi.setPaused(easy, false) }
            let waiting = deferredStarts
            deferredStarts.removeAll()
            for request in waiting where !machine.isFinished { startRequest(request) }
        }
    }

    // MARK: Actions

    private func run(_ actions: [DownloadStateMachine.Action]) {
        for action in actions {
            logger.trace("action", metadata: ["action": "\(action)"])
            switch action {
            case .preallocate(let length):
                do throws(HaulError) {
                    try file?.preallocate(length)
                } catch {
                    run(machine.diskFailed(error))
                    return
                }
            case .start(let request):
                if isSuspended { deferredStarts.append(request) } else { startRequest(request) }
            case .cancel(let segment):
                if let easy = easies.removeValue(forKey: segment) { multi.remove(easy) }
            case .retry(let segment, let attempt, let retryAfter):
                let delay = Backoff.delay(attempt: attempt, base: settings.retryBase, cap: settings.retryCap,
                                          jitter: Double.random(in: 0..<1), retryAfter: retryAfter)
                logger.debug("retrying segment", metadata: ["segment": "\(segment)", "attempt": "\(attempt)",
                                                            "delay": "\(delay)"])
                let item = DispatchWorkItem { [self] in
                    retryTimers[segment] = nil
                    run(machine.retryDue(segment))
                }
                retryTimers[segment] = item
                let nanoseconds = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
                multi.queue.asyncAfter(deadline: .now() + .nanoseconds(Int(nanoseconds)), execute: item)
            case .finish(let length):
                complete(length: length)
            case .fail(let error):
                stopEverything()
                file?.close()
                // A full disk keeps what was written; other failures leave no litter behind.
                if case .diskFull = error {} else { DataFile.remove(tempPath) }
                finish(.failure(error))
            }
        }
    }

    private func startRequest(_ request: DownloadStateMachine.Request) {
        var headers: [String] = []
        if let validator = request.ifRange { headers.append("If-Range: \(validator)") }
        let easy = CurlEasy(options: settings.request, range: request.rangeSpec, extraHeaders: headers, multi: multi)
        let segment = request.segment
        easy.onHead = { [unowned self, unowned easy] head in
            if machine.phase == .probing {
                effectiveURL = easy.effectiveURL
                onResponse(head, effectiveURL)
            }
            run(machine.received(head, for: segment))
        }
        easy.onBody = { [unowned self] buffer in write(buffer, segment: segment) }
        easy.onDone = { [unowned self, unowned easy] code, message in
            guard easies[segment] === easy else { return }
            easies[segment] = nil
            if let error = writeErrors.removeValue(forKey: segment) {
                run(machine.diskFailed(error))
            } else {
                run(machine.transferEnded(segment, .init(curlCode: code, message: message)))
            }
        }
        easies[segment] = easy
        requestCount += 1
        multi.add(easy)
    }

    /// The hot path: `pwrite` straight from curl's buffer at the segment's cursor.
    @inline(__always)
    private func write(_ buffer: UnsafeRawBufferPointer, segment: Int) -> Int {
        let (offset, count) = machine.window(for: segment, available: buffer.count)
        guard count > 0, let file else { return 0 }
        do throws(HaulError) {
            try file.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), at: offset)
        } catch {
            writeErrors[segment] = error
            return 0
        }
        _ = machine.advance(segment, by: count)
        return count
    }

    private func complete(length: Int64) {
        stopEverything()
        guard let file else { return }
        do throws(HaulError) {
            if settings.syncOnFinish { try file.syncData() }
            file.close()
            if let destinationPath { try file.move(to: destinationPath) }
        } catch {
            DataFile.remove(tempPath)
            finish(.failure(error))
            return
        }
        finish(.success(DownloadResult(path: destinationPath ?? tempPath, length: length,
                                       head: machine.probeHead, effectiveURL: effectiveURL,
                                       requests: requestCount)))
    }

    private func stopEverything() {
        for (_, easy) in easies { multi.remove(easy) }
        easies.removeAll()
        for (_, item) in retryTimers { item.cancel() }
        retryTimers.removeAll()
        deferredStarts.removeAll()
    }

    private func finish(_ result: Result<DownloadResult, HaulError>) {
        guard let completion else { return }
        self.completion = nil
        completion(result)
        running = nil
    }
}
