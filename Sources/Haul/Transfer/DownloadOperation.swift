import CCurl
import Dispatch
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging

/// What a finished download produced.
struct DownloadResult: Sendable {
    /// Where the bytes are: the destination, or the temp file when none was given.
    var path: String
    var length: Int64
    /// The URL after redirects, if known.
    var effectiveURL: String?
    /// SHA-256 of the file (lowercase hex), unless hashing was off.
    var sha256: String?
    /// What the digest was checked against, if anything.
    var checksumSource: ChecksumSource?
    /// Seams between responses compared, and how many differed (each difference restarted the
    /// download as one stream).
    var seamsChecked = 0
    var seamMismatches = 0
    /// Sources that delivered bytes of a piece that failed its hash.
    var badSources: [String] = []
    /// When the partial file itself is handed over (no destination): where it is, so what the
    /// caller did not move can be removed through the same owner.
    var handedOver: (root: PlacementRoot, name: String)?
}

/// Why a download ended without a file, and the resume data that continues it (when it can).
struct DownloadFailure: Error, Sendable {
    var error: HaulError
    var resumeData: Data? = nil
    /// A partial file (and journal) kept in the temporary directory for the resume data: the
    /// task removes them when nobody can receive that data.
    var keptTempFile: (root: PlacementRoot, partName: String, journalName: String)? = nil
}

/// Runs one download: owns its state machine, temp file, journal and curl handles, and is the
/// only place that turns the machine's actions into libcurl calls and file writes.
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
        /// Header fields recorded in resume data (credentials already left out or not).
        var resumeHeaders: [[String]] = []
        /// Whether resume data keeps a user name and password in the URL.
        var recordsCredentials = false
        /// Whether mirrors get the credential headers (`Authorization`, `Cookie`) sent to the URL.
        var sendsCredentialsToMirrors = false
        /// How often the data file is synced for power-loss safety (nil: never).
        var durabilityInterval: Duration? = .seconds(3)
        /// Journal after a segment advanced this much.
        var journalStep: Int64 = 1 << 20
        /// Keep the journal current while running (and sync for power loss).
        var writesJournal = true
        /// Hash the file while it downloads (always when a digest is expected).
        var computesSHA256 = true
        /// The digest the file must have.
        var expectedSHA256: SHA256Digest?
        /// The SHA-512 the file must have, when no SHA-256 is known (a metalink with only SHA-512).
        var expectedSHA512: [UInt8]?
        /// Where `expectedSHA256` came from.
        var expectedSource: ChecksumSource = .caller
        /// A metalink's piece hashes and file size: every piece is checked once on disk.
        var pieces: Metalink.Pieces?
        var metalinkSize: Int64?
        /// Keep a file whose digest does not match (for inspection) instead of deleting it.
        var keepsFilesFailingChecksum = false
        /// Mirrors of the same file; request mirror `i` (i ≥ 1) goes to `mirrorURLs[i - 1]`.
        var mirrorURLs: [String] = []
        /// Use the mirrors the first response names (`Link: <…>; rel=duplicate`, RFC 6249).
        var usesLinkMirrors = true
        /// Receive limit for the whole download in bytes per second (0: none).
        var maxBytesPerSecond: Int64 = 0
        /// The longest the whole download may take (nil: no bound).
        var maxDuration: Duration?
    }

    /// Where a download's files live and what to keep when it stops. Every name is resolved
    /// in `root`, the one owner of file placement.
    struct Files: Sendable {
        /// The directory of the partial file and journal.
        let root: PlacementRoot
        let partName: String
        let journalName: String
        /// The directory of the destination (usually `root`).
        let destinationRoot: PlacementRoot
        /// The finished file's name in `destinationRoot`; `nil` when the partial file itself is
        /// handed over.
        let destinationName: String?
        /// The partial file and journal sit beside a named destination, where the same download
        /// finds them again: they are kept when it is cancelled, and after failures whose resume
        /// data only the journal can carry.
        let isBesideDestination: Bool
        /// Replace a regular file already at the destination (never anything else).
        let replacesDestination: Bool

        var partPath: String { root.location(of: partName) }
        var destinationPath: String? { destinationName.map(destinationRoot.location(of:)) }
        /// The path a person knows this download by, for messages.
        var displayPath: String { destinationPath ?? partPath }
    }

    let multi: CurlMulti
    let settings: Settings
    let files: Files
    private let journal: Journal
    let logger: Logger
    private let syscalls: Syscalls
    private let resumeFrom: ResumeData?
    var machine: DownloadStateMachine
    private var file: DataFile?
    var easies: [Int: CurlEasy] = [:]
    private var writeErrors: [Int: HaulError] = [:]
    private var retryTimers: [Int: DispatchWorkItem] = [:]
    var effectiveURL: String?
    /// Where range requests to the URL go: the probe's URL after redirects, so a redirector in
    /// front of several backends cannot send segments of one download to different ones.
    var segmentURL: String?
    private var seams = SeamChecks()
    private var warnedUnverifiable = false
    /// Why each segment's last transfer failed (an HTTP status or curl's message), for the
    /// retry's log record.
    private var failureReasons: [Int: String] = [:]
    private var deadline: DispatchWorkItem?
    private var completion: ((Result<DownloadResult, DownloadFailure>) -> Void)?
    /// Holds the operation alive from `start()` until it finishes.
    var running: DownloadOperation?
    private var isSuspended = false
    /// Requests that came due while suspended; started on resume.
    private var deferredStarts: [DownloadStateMachine.Request] = []
    var reportedResponse = false
    /// The requests made so far, timed by curl.
    var collectedMetrics = CollectedMetrics()

    // Questions for the delegate (DownloadOperation+Questions.swift).
    /// Asks whether to follow a redirect of the first request; `nil`: curl follows by itself.
    var onRedirect: ((HTTPURLResponse, URLRequest, @escaping @Sendable (URLRequest?) -> Void) -> Void)?
    /// Asks for credentials when the first request gets a `401` challenge; `nil`: it fails.
    var onChallenge: ((AuthenticationQuestion, @escaping @Sendable (AuthenticationAnswer) -> Void) -> Void)?
    /// The URL, method, body and headers of requests to the URL (source 0): the caller's, or
    /// those of a redirect the delegate chose.
    var primaryURL: String
    var primaryMethod: String
    var primaryBody: [UInt8]?
    var primaryHeaders: [String]
    /// Credentials the delegate gave, and the URL they were given for.
    var credential: (user: String, password: String, scheme: UInt)?
    var credentialOrigin: String?
    var authenticationRounds = 0
    /// The delegate declined: the next answer of the first request counts as it is.
    var declinesQuestions = false
    private var produceResumeDataOnCancel = false

    // Journal and durability state.
    private var progressTimer: DispatchSourceTimer?
    private var journalCursors: [Int: Int64] = [:]
    private var syncedRanges: [Range<Int64>] = []
    private var lastSync = ContinuousClock.now
    private var syncInFlight = false
    private var journalFailed = false
    /// The fingerprint of the first done bytes of this epoch, computed once.
    private var sample: ResumeData.Sample?
    private var hasher: StreamingHasher?
    /// Starts writeback of finished stretches early, when the file is synced at the end.
    private var writeback: Writeback?
    /// The mirrors: the caller's, then any the first response named.
    var mirrorURLs: [String]
    var pieceVerifier: PieceVerifier?
    /// Sources that wrote a piece that failed its hash, in the order found.
    private var badSources: [Int] = []
    /// Rate limit: a token bucket refilled by a 20 ms timer; transfers that find it empty are
    /// paused (curl keeps their bytes) until it refills.
    /// Bytes that may still be taken now (fractional, so a limit under 10 B/s still refills).
    private var tokens: Double = 0
    /// The receive limit now (bytes per second, 0: none); it can change while running.
    private var rate: Int64 = 0
    private var rateTimer: DispatchSourceTimer?
    private var lastRefill = ContinuousClock.now
    /// Transfers paused for the rate limit, oldest first: woken in turn, so none starves.
    private var pausedForRate: [(segment: Int, needs: Double)] = []
    private let startedAt = ContinuousClock.now
    /// The digest to check and where it came from (the caller, or the server's headers).
    private var expected: (digest: SHA256Digest, source: ChecksumSource)?
    private let bootID = currentBootID()
    private static let syncQueue = DispatchQueue(label: "haul.sync")
    /// Where finished downloads are synced and renamed into place (concurrent: each works on
    /// its own file).
    private static let finishQueue = DispatchQueue(label: "haul.finish", attributes: .concurrent)

    /// Called on the queue with the first response head of the download (of each restart) and
    /// the URL after redirects.
    var onResponse: (ResponseHead, String?) -> Void = { _, _ in }
    /// Called on the queue when the file changed on the server and the download started over.
    var onRestart: (String) -> Void = { _ in }

    init(multi: CurlMulti, settings: Settings, files: Files, resume: ResumeData? = nil, logger: Logger,
         syscalls: Syscalls = .system) {
        self.multi = multi
        self.settings = settings
        self.files = files
        self.journal = Journal(root: files.root, name: files.journalName)
        self.logger = logger
        self.syscalls = syscalls
        self.resumeFrom = resume
        primaryURL = settings.request.url
        primaryMethod = settings.request.method
        primaryBody = settings.request.body
        primaryHeaders = settings.request.headers
        self.mirrorURLs = settings.mirrorURLs
        if let digest = settings.expectedSHA256 { expected = (digest, settings.expectedSource) }
        rate = settings.maxBytesPerSecond
        if let resume {
            if expected == nil, let hex = resume.expectedSHA256, let digest = SHA256Digest(hex: hex) {
                expected = (digest, .caller)
            }
            let trusted = resume.trustedRanges(currentBootID: currentBootID())
            machine = DownloadStateMachine(options: settings.engine, resume: .init(
                length: resume.length, etag: resume.etag, lastModified: resume.lastModified, done: trusted))
            syncedRanges = resume.syncedRanges
        } else {
            machine = DownloadStateMachine(options: settings.engine)
        }
        if let pieces = settings.pieces, let size = settings.metalinkSize {
            // Pieces verified before are trusted only as far as their bytes are.
            let trusted = resume.map { $0.trustedRanges(currentBootID: currentBootID()) } ?? []
            let ledger = PieceLedger(pieceLength: pieces.length, length: size)
            let verified = resume?.pieceLength == pieces.length ? (resume?.verifiedPieces ?? []).filter { index in
                let range = ledger.range(of: index)
                return trusted.contains { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound }
            } : []
            machine.pieces = PieceLedger(pieceLength: pieces.length, length: size, verified: verified)
        }
    }

    /// Bytes on disk so far, the total when known, and the connections transferring now (read on
    /// the queue, for progress).
    var progress: (done: Int64, expected: Int64?, connections: Int) {
        (machine.plan.bytesDone, machine.plan.length, easies.count)
    }

    /// Sets the completion handler (before `start()`).
    func setCompletion(_ completion: @escaping (Result<DownloadResult, DownloadFailure>) -> Void) {
        self.completion = completion
    }

    func start() {
        multi.queue.async { [self] in
            guard completion != nil, !machine.isFinished else { return }
            running = self
            do throws(HaulError) {
                if let destination = files.destinationName, let existing = try files.destinationRoot.status(of: destination) {
                    // Refuse before downloading anything, not after.
                    guard existing.st_mode & S_IFMT == S_IFREG else {
                        throw HaulError.notARegularFile(path: files.destinationRoot.location(of: destination))
                    }
                    guard files.replacesDestination else {
                        throw HaulError.destinationExists(path: files.destinationRoot.location(of: destination))
                    }
                }
                if let resume = resumeFrom {
                    let opened = try files.root.openExisting(files.partName, displayPath: files.displayPath, calls: syscalls)
                    file = opened
                    try Self.check(opened, against: resume)
                } else {
                    // Lock the partial file first: if another download holds it, its journal stays.
                    file = try files.root.createFile(files.partName, displayPath: files.displayPath, calls: syscalls)
                    journal.remove()
                }
            } catch {
                finish(.failure(DownloadFailure(error: error, resumeData: nil)))
                return
            }
            if settings.computesSHA256 || expected != nil || settings.expectedSHA512 != nil, let file {
                hasher = StreamingHasher(descriptor: file.reopenForReading(), path: file.path,
                                         algorithm: expected == nil && settings.expectedSHA512 != nil ? .sha512 : .sha256)
            }
            if let pieces = settings.pieces, let file {
                pieceVerifier = PieceVerifier(descriptor: file.reopenForReading(), pieces: pieces)
            }
            if settings.syncOnFinish, let file { writeback = Writeback(descriptor: file.duplicateDescriptor()) }
            startProgressTimer()
            startDeadline()
            run(machine.start())
        }
    }

    /// Cancels; with `producingResumeData`, the failure carries resume data and the partial
    /// file stays.
    func cancel(producingResumeData: Bool = false) {
        multi.queue.async { [self] in
            produceResumeDataOnCancel = producingResumeData
            run(machine.cancel())
        }
    }

    /// Pauses every transfer; each keeps its range and connection. New requests wait. The
    /// journal is brought up to date.
    func suspend() {
        multi.queue.async { [self] in
            guard !isSuspended, !machine.isFinished else { return }
            isSuspended = true
            for easy in easies.values { multi.setPaused(easy, true) }
            writeJournal(durable: false)
        }
    }

    /// Continues after `suspend()`.
    func resume() {
        multi.queue.async { [self] in
            guard isSuspended else { return }
            isSuspended = false
            machine.resumedAfterSuspension()
            for easy in Array(easies.values) { multi.setPaused(easy, false) }
            let waiting = deferredStarts
            deferredStarts.removeAll()
            for request in waiting where !machine.isFinished { startRequest(request) }
        }
    }

    // MARK: Actions

    func run(_ actions: [DownloadStateMachine.Action]) {
        for action in actions {
            logger.trace("action", metadata: ["action": "\(action)"])
            switch action {
            case .preallocate(let length):
                if let size = settings.metalinkSize, size != length {
                    run(machine.diskFailed(.remoteFileChanged(reason: "the server's file is \(length) bytes; the metalink says \(size)")))
                    return
                }
                do throws(HaulError) {
                    try preallocate(length)
                } catch {
                    run(machine.diskFailed(error))
                    return
                }
            case .start(let request):
                startOrDefer(request)
            case .cancel(let segment):
                if let easy = easies.removeValue(forKey: segment) { multi.remove(easy) }
                deferredStarts.removeAll { $0.segment == segment }
            case .retry(let segment, let attempt, let retryAfter):
                scheduleRetry(segment: segment, attempt: attempt, retryAfter: retryAfter)
            case .unverifiable:
                if !warnedUnverifiable {
                    warnedUnverifiable = true
                    logger.debug("the server gives no strong ETag or Last-Modified: only seam checks can tell if the file changes")
                }
            case .badPiece(let index, let offset, let sources):
                let names = sources.map(sourceName)
                logger.warning("a piece failed its hash; fetching it again from another source",
                               metadata: ["piece": "\(index)", "offset": "\(offset)", "written by": "\(names.joined(separator: ", "))"])
                for source in sources where !badSources.contains(source) { badSources.append(source) }
                // The whole-file hash may have read the bad bytes: it starts over from byte 0
                // (rare, and cheaper than holding it behind the piece checks every time).
                hasher?.reset()
            case .droppedMirror(let index, let reason):
                let url = index == 0 ? settings.request.url : mirrorURLs[index - 1]
                let shown = URL(string: url)?.withoutCredentials.absoluteString ?? "(source \(index))"
                logger.warning("dropping a source for this download", metadata: ["url": "\(shown)", "reason": "\(reason)"])
            case .restarted(let reason):
                logger.warning("restarting from byte 0", metadata: ["reason": "\(reason)"])
                journalCursors.removeAll()
                syncedRanges.removeAll()
                seams.reset()
                segmentURL = nil
                sample = nil
                hasher?.reset()
                if expected?.source != .caller, expected?.source != .metalink { expected = nil }
                reportedResponse = false
                journal.remove()
                onRestart(reason)
            case .finish(let length):
                // Bytes kept for seams whose other side has landed now must match first.
                if let mismatch = resolveSeams() {
                    run(machine.contentMismatch(at: mismatch))
                    return
                }
                if machine.isFinished { complete(length: length) }
            case .fail(let error):
                failed(error)
            }
        }
    }

    /// Room for `length` bytes: refused at once when the file system does not have it (the
    /// server's claim is not believed into a full disk), then allocated.
    private func preallocate(_ length: Int64) throws(HaulError) {
        guard let file else { return }
        let held = (try? file.identity().size) ?? 0
        if let free = files.root.freeBytes(), length - held > free {
            throw .insufficientSpace(path: files.displayPath, needed: length, available: free)
        }
        do throws(HaulError) {
            try file.preallocate(length)
        } catch {
            guard case .diskFull = error else { throw error }
            // Nothing of this length was written yet: give the space back and say why.
            try? file.setLength(held)
            throw .insufficientSpace(path: files.displayPath, needed: length, available: files.root.freeBytes() ?? 0)
        }
    }

    /// A resumed partial file must be the one the resume data describes: the same inode, at
    /// least as long, and with the recorded bytes still there.
    static func check(_ file: DataFile, against resume: ResumeData) throws(HaulError) {
        let now = try file.identity()
        guard now.device == resume.tempFile.device, now.inode == resume.tempFile.inode else {
            throw .resumeDataInvalid(reason: "the partial file \(file.path) was replaced by another file")
        }
        guard now.size >= resume.length else {
            throw .resumeDataInvalid(reason: "the partial file \(file.path) is shorter than recorded "
                + "(\(now.size) of \(resume.length) bytes)")
        }
        if let sample = resume.sample, file.sha256(offset: sample.offset, count: Int(sample.length)) != sample.sha256 {
            throw .resumeDataInvalid(reason: "the partial file \(file.path) was replaced (its bytes are not the ones recorded)")
        }
    }

    /// Starts `request`, or keeps it for `resume()` while the download is suspended.
    func startOrDefer(_ request: DownloadStateMachine.Request) {
        if isSuspended { deferredStarts.append(request) } else { startRequest(request) }
    }

    func startRequest(_ request: DownloadStateMachine.Request) {
        var headers: [String] = []
        if let validator = request.ifRange { headers.append("If-Range: \(validator)") }
        var options = settings.request
        if request.mirror == 0 {
            options.url = primaryURL
            options.method = primaryMethod
            options.body = primaryBody
            options.headers = primaryHeaders
            options.followsRedirects = onRedirect == nil || reportedResponse
            if let credential, Self.sameOrigin(credentialOrigin ?? "", request.kind == .range ? (segmentURL ?? primaryURL) : primaryURL) {
                options.credential = credential
            }
        }
        if request.mirror > 0, request.mirror <= mirrorURLs.count {
            options.url = mirrorURLs[request.mirror - 1]
            if !settings.sendsCredentialsToMirrors { options.headers = options.headers.filter { !Self.isCredential($0) } }
        } else if request.kind == .range, let segmentURL, segmentURL != options.url {
            // Credentials go to the host the caller named, not to one a redirect chose.
            if !Self.sameOrigin(segmentURL, options.url) {
                options.headers = options.headers.filter { !Self.isCredential($0) }
            }
            options.url = segmentURL
        }
        let easy = CurlEasy(options: options, range: request.rangeSpec, extraHeaders: headers, fresh: request.fresh,
                            multi: multi)
        let segment = request.segment
        let fetchStart = Date()
        var answer: ResponseHead?
        easy.onHead = { [unowned self, unowned easy] head in
            guard easies[segment] === easy else { return }
            answer = head
            let asked = intercepts(head, easy: easy, request: request) {
                easy.transactionMetrics(started: fetchStart, request: Self.metricsRequest(options, range: request.rangeSpec),
                                        head: head, viaProxy: options.proxy != nil)
            }
            if asked { return }
            if !reportedResponse {
                reportedResponse = true
                effectiveURL = easy.effectiveURL
                if request.mirror == 0 { segmentURL = effectiveURL }
                if request.kind == .probe { addLinkedMirrors(head) }
                if expected == nil, settings.expectedSHA512 == nil, let server = SHA256Digest.fromServer(head.fields) {
                    expected = server
                    logger.info("verifying with the server's digest", metadata: ["header": "\(server.1.rawValue)"])
                }
                onResponse(head, effectiveURL)
            }
            if !(200..<300).contains(head.status) {
                failureReasons[segment] = "HTTP \(head.status)"
                    + (head.retryAfterSeconds.map { " (Retry-After: \($0) s)" } ?? "")
            }
            run(machine.received(head, for: segment))
        }
        let source = request.mirror
        easy.onBody = { [unowned self] buffer in write(buffer, segment: segment, source: source) }
        easy.onDone = { [unowned self, unowned easy] code, message in
            guard easies[segment] === easy else { return }
            easies[segment] = nil
            collectedMetrics.append(easy.transactionMetrics(started: fetchStart, request: Self.metricsRequest(options, range: request.rangeSpec),
                                                            head: answer, viaProxy: options.proxy != nil))
            if code != CURLE_OK, failureReasons[segment] == nil {
                // A write error without a disk error is the engine refusing the response's body.
                failureReasons[segment] = code == CURLE_WRITE_ERROR && writeErrors[segment] == nil
                    ? "its response was refused before any byte was kept" : message
            }
            if let error = writeErrors.removeValue(forKey: segment) {
                run(machine.diskFailed(error))
            } else {
                run(machine.transferEnded(segment, .init(curlCode: code, message: message)))
            }
        }
        easies[segment] = easy
        multi.add(easy)
    }

    private func scheduleRetry(segment: Int, attempt: Int, retryAfter: Int?) {
        let delay = Backoff.delay(attempt: attempt, base: settings.retryBase, cap: settings.retryCap,
                                  jitter: Double.random(in: 0..<1), retryAfter: retryAfter)
        let reason = failureReasons.removeValue(forKey: segment) ?? "the transfer ended early"
        logger.info("retrying a segment", metadata: ["segment": "\(segment)", "attempt": "\(attempt)",
                                                     "delay": "\((delay.secondsValue * 100).rounded() / 100) s", "reason": "\(reason)"])
        let item = DispatchWorkItem { [self] in
            retryTimers[segment] = nil
            run(machine.retryDue(segment))
        }
        retryTimers[segment]?.cancel()
        retryTimers[segment] = item
        multi.queue.asyncAfter(deadline: .now() + delay.dispatchInterval, execute: item)
    }

    /// The hot path: `pwrite` straight from curl's buffer at the segment's cursor. Bytes that
    /// another response delivered too (seams, twins, a whole-file retry) are compared instead.
    /// Returning less than offered stops the transfer; `ccurl_writefunc_pause` pauses it.
    @inline(__always)
    private func write(_ buffer: UnsafeRawBufferPointer, segment: Int, source: Int) -> Int {
        guard let file else { return 0 }
        if rate > 0 {
            // Whole callbacks only (curl cannot take part of one): wait until the bucket holds
            // all of it (or is full, for a callback larger than the bucket: the debt is paid by
            // later waits); curl keeps the bytes meanwhile. A transfer with nothing left to take
            // is stopped, never paused.
            if case .stop = machine.step(for: segment, available: buffer.count) { return 0 }
            let needs = min(Double(buffer.count), bucketSize(rate))
            guard tokens >= needs else {
                if !pausedForRate.contains(where: { $0.segment == segment }) { pausedForRate.append((segment, needs)) }
                return ccurl_writefunc_pause
            }
            tokens -= Double(buffer.count)
        }
        var taken = 0
        while taken < buffer.count {
            switch machine.step(for: segment, available: buffer.count - taken) {
            case .stop:
                return taken
            case .write(let offset, let count):
                do throws(HaulError) {
                    try file.write(UnsafeRawBufferPointer(rebasing: buffer[taken..<(taken + count)]), at: offset)
                } catch {
                    writeErrors[segment] = error
                    return 0
                }
                machine.advance(segment, by: count)
                machine.pieces?.wrote(offset: offset, count: count, source: source)
                taken += count
            case .verify(let offset, let count):
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[taken..<(taken + count)])
                let mismatch: Int64?
                do throws(HaulError) {
                    mismatch = try seams.verify(bytes, at: offset, segment: segment, plan: machine.plan, file: file)
                } catch {
                    writeErrors[segment] = error
                    return 0
                }
                machine.advance(segment, by: count)
                taken += count
                if let mismatch {
                    logger.warning("seam mismatch: two responses differ", metadata: ["offset": "\(mismatch)"])
                    // With piece hashes, the hash of the piece says which response was right.
                    if machine.pieces == nil { run(machine.contentMismatch(at: mismatch)) }
                }
            }
        }
        return taken
    }

    /// Compares kept seam bytes whose other side has landed. Returns a mismatch's offset.
    private func resolveSeams() -> Int64? {
        guard let file else { return nil }
        do throws(HaulError) {
            return try seams.resolve(plan: machine.plan, file: file)
        } catch {
            logger.warning("could not read back a seam", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Same scheme, host and port (default ports filled in), as curl judges where credentials
    /// may go.
    static func sameOrigin(_ a: String, _ b: String) -> Bool {
        guard let x = URLComponents(string: a), let y = URLComponents(string: b) else { return false }
        func port(_ c: URLComponents) -> Int? { c.port ?? (c.scheme?.lowercased() == "https" ? 443 : 80) }
        return x.scheme?.lowercased() == y.scheme?.lowercased() && x.host?.lowercased() == y.host?.lowercased()
            && port(x) == port(y)
    }

    static func isCredential(_ header: String) -> Bool {
        let name = header.prefix { $0 != ":" }.lowercased()
        return name == "authorization" || name == "cookie"
    }

    // MARK: Ending

    private func complete(length: Int64) {
        stopEverything()
        guard let file else { return }
        do throws(HaulError) {
            try file.setLength(length)
        } catch {
            discard(DownloadFailure(error: error))
            return
        }
        guard let hasher else {
            moveIntoPlace(length: length, digest: nil)
            return
        }
        // Only the tail is left to hash; wait for it off this queue.
        hasher.finish(length: length) { [self] result in
            multi.queue.async { [self] in
                switch result {
                case .success(let digest): moveIntoPlace(length: length, digest: digest)
                case .failure(let error): discard(DownloadFailure(error: error))
                }
            }
        }
    }

    /// The bytes are complete: check the digest, sync, and rename into place.
    private func moveIntoPlace(length: Int64, digest: String?) {
        guard let file else { return }
        if let wanted = expected?.digest.hex ?? settings.expectedSHA512?.hexString, let digest, digest != wanted {
            logger.error("checksum mismatch", metadata: ["expected": "\(wanted)", "actual": "\(digest)"])
            let error = HaulError.checksumMismatch(expected: wanted, actual: digest)
            if settings.keepsFilesFailingChecksum {
                file.close()
                journal.remove()
                finish(.failure(DownloadFailure(error: error)))
            } else {
                discard(DownloadFailure(error: error))
            }
            return
        }
        // The sync and the rename wait for the disk: off the session queue, so the session's
        // other downloads go on meanwhile (and several downloads' syncs overlap).
        let files = self.files
        let syncs = settings.syncOnFinish
        Self.finishQueue.async { [self] in
            var failure: HaulError?
            do throws(HaulError) {
                if syncs { try file.syncData() }
                if let destination = files.destinationName {
                    // Published by descriptor: the result is the inode written and hashed here.
                    try files.root.publish(file, named: files.partName, to: destination, in: files.destinationRoot,
                                           replacing: files.replacesDestination)
                    if syncs { files.destinationRoot.sync() }
                }
                file.close()
            } catch {
                failure = error
            }
            let outcome = failure
            multi.queue.async { [self] in
                if let failure = outcome {
                    discard(DownloadFailure(error: failure))
                } else {
                    published(length: length, digest: digest)
                }
            }
        }
    }

    /// The file is in place: the journal goes, the result is reported.
    private func published(length: Int64, digest: String?) {
        journal.remove()
        logger.debug("seams", metadata: ["checked": "\(seams.checked)", "mismatched": "\(seams.mismatched)"])
        finish(.success(DownloadResult(path: files.destinationPath ?? files.partPath, length: length,
                                       effectiveURL: effectiveURL, sha256: expected == nil && settings.expectedSHA512 != nil ? nil : digest,
                                       checksumSource: digest == nil ? nil : expected?.source ?? (settings.expectedSHA512 == nil ? nil : .metalink),
                                       seamsChecked: seams.checked, seamMismatches: seams.mismatched,
                                       badSources: badSources.map(sourceName),
                                       handedOver: files.destinationName == nil ? (files.root, files.partName) : nil)))
    }

    /// Ends with `failure`, removing the partial file and journal (only if this download opened,
    /// and so locked, the file: never another download's).
    private func discard(_ failure: DownloadFailure) {
        if let file {
            file.close()
            files.root.remove(files.partName)
            journal.remove()
        }
        finish(.failure(failure))
    }

    /// Whether the partial file and journal stay after `error`: when something can carry the
    /// resume data to whoever continues the download.
    private func keepsPartialFile(after error: HaulError) -> Bool {
        switch error {
        case .cancelled:
            return produceResumeDataOnCancel || files.isBesideDestination
        case .remoteFileChanged, .inconsistentContent, .resumeDataInvalid, .invalidURL, .unsupportedRequest, .checksumMismatch, .badPiece,
             .invalidChecksum, .fileInUse, .sessionInvalidated, .notARegularFile, .destinationExists,
             .invalidFileName, .insufficientSpace:
            return false
        case .transport, .connectionClosedEarly, .httpStatus, .diskFull:
            // The public error (URLError userInfo, or HaulError.diskFull) carries the data.
            return true
        case .invalidContentRange, .rangeIgnored, .fileSystem:
            // Only a journal beside a destination can hand these on.
            return files.isBesideDestination
        }
    }

    /// Whether the public error for `error` hands resume data to the caller.
    private static func errorCarriesResumeData(_ error: HaulError, producing: Bool) -> Bool {
        switch error {
        case .cancelled: return producing
        case .transport, .connectionClosedEarly, .httpStatus, .diskFull: return true
        default: return false
        }
    }

    func failed(_ error: HaulError) {
        let keep = keepsPartialFile(after: error)
        var blob: Data?
        if keep, machine.isResumable, let data = makeResumeData()?.encoded() {
            do throws(HaulError) {
                try journal.write(data, durable: true)
                blob = data
            } catch let journalError {
                logger.warning("could not write the journal", metadata: ["error": "\(journalError)"])
                // Keep the bytes only if the error itself carries the resume data to someone;
                // otherwise the journal was the only way back to them.
                blob = Self.errorCarriesResumeData(error, producing: produceResumeDataOnCancel) ? data : nil
            }
        }
        stopEverything()
        var keepsBytes = blob != nil
        // A full disk keeps what was written beside a destination even when the server makes
        // resuming impossible; in the temporary directory nobody could find it again.
        if case .diskFull = error, files.isBesideDestination { keepsBytes = true }
        if !keepsBytes {
            if let file {
                file.close()
                files.root.remove(files.partName)
                journal.remove()
            }
        } else {
            if let file { _ = try? file.syncData() }
            file?.close()
        }
        var failure = DownloadFailure(error: error, resumeData: blob)
        if keepsBytes, !files.isBesideDestination {
            failure.keptTempFile = (files.root, files.partName, files.journalName)
        }
        finish(.failure(failure))
    }

    /// The request a transaction's metrics describe.
    static func metricsRequest(_ options: RequestOptions, range: String?) -> URLRequest {
        var request = URLRequest(url: URL(string: options.url) ?? URL(fileURLWithPath: "/"))
        request.httpMethod = options.method
        if let range { request.setValue("bytes=\(range)", forHTTPHeaderField: "Range") }
        return request
    }

    private func stopEverything() {
        writeback?.close()
        writeback = nil
        for (_, easy) in easies { multi.remove(easy) }
        easies.removeAll()
        for (_, item) in retryTimers { item.cancel() }
        retryTimers.removeAll()
        deferredStarts.removeAll()
        progressTimer?.cancel()
        progressTimer = nil
        rateTimer?.cancel()
        rateTimer = nil
        deadline?.cancel()
        deadline = nil
    }

    private func finish(_ result: Result<DownloadResult, DownloadFailure>) {
        guard let completion else { return }
        self.completion = nil
        completion(result)
        // This may run inside a curl callback: the handles' removal waits for curl to return,
        // and their callbacks point at this object, so let go of it only after that.
        multi.queue.async { [self] in running = nil }
    }

    // MARK: Journal

    /// The resume blob for the bytes on disk now; `nil` when the download cannot be resumed.
    func makeResumeData() -> ResumeData? {
        guard machine.isResumable, let length = machine.plan.length, let file,
              var identity = try? file.identity(), let url = URL(string: settings.request.url) else { return nil }
        identity.path = files.partPath
        let done = machine.plan.doneRanges
        if sample == nil, let first = done.first {
            let count = Int(min(first.count64, 64 << 10))
            if let digest = file.sha256(offset: first.lowerBound, count: count) {
                sample = ResumeData.Sample(offset: first.lowerBound, length: Int64(count), sha256: digest)
            }
        }
        // A password in the URL stays in memory unless the caller opts in, as header credentials do.
        let recorded = settings.recordsCredentials ? url : url.withoutCredentials
        return ResumeData(
            url: recorded, finalURL: effectiveURL.flatMap(URL.init(string:)).flatMap { $0 == url ? nil : $0.withoutCredentials },
            headers: settings.resumeHeaders, etag: machine.etag, lastModified: machine.lastModified,
            length: length, tempFile: identity, sample: sample, doneRanges: done,
            syncedRanges: syncedRanges, bootID: bootID, destination: files.destinationPath,
            expectedSHA256: expected?.source == .caller || expected?.source == .metalink ? expected?.digest.hex : nil,
            mirrors: settings.pieces == nil ? [] : mirrorURLs.compactMap { URL(string: $0)?.withoutCredentials },
            pieceLength: settings.pieces?.length, verifiedPieces: machine.pieces?.verified ?? [])
    }

    /// Refills the rate-limit bucket every 20 ms and lets paused transfers go on.
    private func startRateTimer() {
        guard rate > 0, rateTimer == nil else { return }
        tokens = Double(rate) / 10
        lastRefill = .now
        let timer = DispatchSource.makeTimerSource(queue: multi.queue)
        timer.schedule(deadline: .now() + .milliseconds(20), repeating: .milliseconds(20), leeway: .milliseconds(5))
        timer.setEventHandler { [weak self] in self?.refill() }
        rateTimer = timer
        timer.activate()
    }

    /// A tenth of a second's worth, and at least one receive buffer so a callback can always
    /// be taken whole (a tiny limit then moves in buffer-sized steps at the right average).
    private func bucketSize(_ rate: Int64) -> Double {
        max(Double(rate) / 10, Double(settings.request.bufferSize))
    }

    /// Changes the receive limit while the download runs (0 lifts it).
    func setRateLimit(_ bytesPerSecond: Int64) {
        multi.queue.async { [self] in
            rate = max(0, bytesPerSecond)
            guard !machine.isFinished, file != nil else { return }
            if rate > 0 {
                startRateTimer()
                return
            }
            rateTimer?.cancel()
            rateTimer = nil
            let waiting = pausedForRate
            pausedForRate.removeAll()
            for item in waiting where !isSuspended {
                if let easy = easies[item.segment] { multi.setPaused(easy, false) }
            }
        }
    }

    private func refill() {
        let now = ContinuousClock.now
        tokens = min(bucketSize(rate), tokens + Double(rate) * (now - lastRefill).secondsValue)
        lastRefill = now
        guard !isSuspended else { return }
        // Wake the longest-waiting transfers, in turn, while the bucket can pay for what each
        // was offered; one that finds too little pauses again at the back of the line.
        var turns = pausedForRate.count
        while turns > 0, let first = pausedForRate.first, tokens >= first.needs, !machine.isFinished {
            turns -= 1
            pausedForRate.removeFirst()
            if let easy = easies[first.segment] { multi.setPaused(easy, false) }
        }
    }

    /// The whole download's time bound: when it passes, the download fails as timed out and
    /// keeps what it wrote.
    private func startDeadline() {
        guard let limit = settings.maxDuration else { return }
        let item = DispatchWorkItem { [weak self] in
            guard let self else { return }
            let seconds = Int(limit.secondsValue.rounded(.up))
            run(machine.diskFailed(.transport(code: Int(CURLE_OPERATION_TIMEDOUT.rawValue),
                                              message: "the download took longer than \(seconds) s")))
        }
        deadline = item
        multi.queue.asyncAfter(deadline: .now() + limit.dispatchInterval, execute: item)
    }

    private func startProgressTimer() {
        startRateTimer()
        let timer = DispatchSource.makeTimerSource(queue: multi.queue)
        timer.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100), leeway: .milliseconds(20))
        timer.setEventHandler { [weak self] in self?.progressTick() }
        progressTimer = timer
        timer.activate()
    }

    /// Ten times a second: feed the hasher the done prefix; journal when a segment advanced a
    /// step; every few seconds make the bytes so far survive a power cut.
    private func progressTick() {
        if let mismatch = resolveSeams(), machine.pieces == nil {
            run(machine.contentMismatch(at: mismatch))
        }
        verifyReadyPieces()
        // Suspended segments do not move by design: they are not judged.
        if !isSuspended { run(machine.tick(now: ContinuousClock.now - startedAt)) }
        guard !machine.isFinished else { return }
        if let hasher, let first = machine.plan.doneRanges.first, first.lowerBound == 0 {
            hasher.advance(to: first.upperBound)
        }
        if let writeback {
            let epoch = machine.plan.epoch
            writeback.advance(machine.plan.segments.lazy.filter { $0.epoch == epoch }.map { ($0.id, $0.start, $0.cursor) },
                              epoch: epoch)
        }
        guard settings.writesJournal, machine.isResumable, !journalFailed else { return }
        let epoch = machine.plan.epoch
        var advanced = false
        for segment in machine.plan.segments where segment.epoch == epoch {
            if segment.cursor - (journalCursors[segment.id] ?? segment.start) >= settings.journalStep {
                advanced = true
                break
            }
        }
        if advanced { writeJournal(durable: false) }
        if let interval = settings.durabilityInterval, !syncInFlight, ContinuousClock.now - lastSync >= interval {
            syncForPowerLoss()
        }
    }

    private func writeJournal(durable: Bool) {
        guard let data = makeResumeData()?.encoded() else { return }
        do throws(HaulError) {
            try journal.write(data, durable: durable)
            for segment in machine.plan.segments { journalCursors[segment.id] = segment.cursor }
        } catch {
            // A journal that cannot be written costs resumability, not the download.
            journalFailed = true
            logger.warning("journal disabled: \(error)")
        }
    }

    /// `fdatasync` on a background queue, then record what it covered and sync the journal.
    /// Only ranges written before the sync started count as synced.
    private func syncForPowerLoss() {
        guard let file else { return }
        let fd = file.duplicateDescriptor()
        guard fd >= 0 else { return }
        let covered = machine.plan.doneRanges
        let epoch = machine.plan.epoch
        syncInFlight = true
        lastSync = .now
        Self.syncQueue.async { [self] in
            let ok = fdatasync(fd) == 0
            close(fd)
            multi.queue.async { [self] in
                syncInFlight = false
                guard ok, !machine.isFinished, machine.plan.epoch == epoch else { return }
                syncedRanges = covered
                writeJournal(durable: true)
            }
        }
    }
}
