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
    /// When there was a destination: the file as published, in the directory held open.
    var finished: FinishedFile?
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
        /// Directories this download made for its destination (a metalink name's `a/b/`),
        /// removed again if it fails and they are empty.
        var madeDirectories: [MadeDirectory] = []

        var partPath: String { root.location(of: partName) }
        var destinationPath: String? { destinationName.map(destinationRoot.location(of:)) }
        /// The path a person knows this download by, for messages.
        var displayPath: String { destinationPath ?? partPath }
    }

    let multi: CurlMulti
    let settings: Settings
    let files: Files
    let journal: Journal
    let logger: Logger
    let syscalls: Syscalls
    let resumeFrom: ResumeData?
    var machine: DownloadStateMachine
    var file: DataFile?
    var easies: [Int: CurlEasy] = [:]
    /// The body bytes each running transfer holds back (see `WriteStage`), by segment.
    var stages: [Int: WriteStage] = [:]
    var writeErrors: [Int: HaulError] = [:]
    var retryTimers: [Int: DispatchWorkItem] = [:]
    var effectiveURL: String?
    /// Where range requests to the URL go: the probe's URL after redirects, so a redirector in
    /// front of several backends cannot send segments of one download to different ones.
    var segmentURL: String?
    var seams = SeamChecks()
    var warnedUnverifiable = false
    /// Why each segment's last transfer failed (an HTTP status or curl's message), for the
    /// retry's log record.
    var failureReasons: [Int: String] = [:]
    var deadline: DispatchWorkItem?
    var completion: ((Result<DownloadResult, DownloadFailure>) -> Void)?
    /// Holds the operation alive from `start()` until it finishes.
    var running: DownloadOperation?
    var isSuspended = false
    /// Requests that came due while suspended; started on resume.
    var deferredStarts: [DownloadStateMachine.Request] = []
    var reportedResponse = false
    /// The URL's first successful answer has been looked at for an instance digest.
    var readServerDigest = false
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
    var produceResumeDataOnCancel = false

    // Journal and durability state.
    var progressTimer: DispatchSourceTimer?
    var journalCursors: [Int: Int64] = [:]
    var syncedRanges: [Range<Int64>] = []
    var lastSync = ContinuousClock.now
    var syncInFlight = false
    var journalFailed = false
    /// How many bytes at the start are another program's partial file, given back on failure
    /// (`ResumeData.adoptedPrefix`); `nil` once a restart overwrites them.
    var adoptedPrefix: Int64?
    /// The fingerprint of the first done bytes of this epoch, computed once.
    var sample: ResumeData.Sample?
    var hasher: StreamingHasher? { didSet { noteChecksum() } }
    /// Starts writeback of finished stretches early, when the file is synced at the end.
    var writeback: Writeback?
    /// The mirrors: the caller's, then any the first response named.
    var mirrorURLs: [String]
    var pieceVerifier: PieceVerifier?
    /// A metalink the first response names (DownloadOperation+Description.swift).
    var description = DescriptionState()
    /// The SHA-512 the file must have (the settings', or a server-named metalink's).
    var expectedSHA512: [UInt8]? { didSet { noteChecksum() } }
    /// Sources that wrote a piece that failed its hash, in the order found.
    var badSources: [Int] = []
    /// Rate limit: a token bucket refilled by a 20 ms timer; transfers that find it empty are
    /// paused (curl keeps their bytes) until it refills.
    /// Bytes that may still be taken now (fractional, so a limit under 10 B/s still refills).
    var tokens: Double = 0
    /// The receive limit now (bytes per second, 0: none); it can change while running.
    var rate: Int64 = 0
    var rateTimer: DispatchSourceTimer?
    var lastRefill = ContinuousClock.now
    /// Transfers paused for the rate limit, oldest first: woken in turn, so none starves.
    var pausedForRate: [(segment: Int, needs: Double)] = []
    let startedAt = ContinuousClock.now
    /// The digest to check and where it came from (the caller, or the server's headers).
    var expected: (digest: SHA256Digest, source: ChecksumSource)? { didSet { noteChecksum() } }

    /// Tells the state machine whether a whole-file digest will check the result (mirrors that
    /// share no validator with the URL are used only then).
    func noteChecksum() {
        machine.checksumKnown = hasher != nil && (expected != nil || expectedSHA512 != nil)
    }

    /// Hashes the file from byte 0, with the function the expected digest needs, unless it is
    /// hashed already: at the start, or once a server's or a metalink's digest is adopted.
    func startHashing() {
        guard hasher == nil, let file else { return }
        hasher = StreamingHasher(descriptor: file.reopenForReading(), path: file.path,
                                 algorithm: expected == nil && expectedSHA512 != nil ? .sha512 : .sha256)
    }
    let bootID = currentBootID()

    /// Called on the queue with the first response head of the download (of each restart) and
    /// the URL after redirects.
    var onResponse: (ResponseHead, String?) -> Void = { _, _ in }
    /// Called on the queue when the file changed on the server and the download started over.
    var onRestart: (String) -> Void = { _ in }
    /// Called on the queue, once, when every byte has arrived (before the hash's tail, the sync
    /// and the rename).
    var onReceivedAll: () -> Void = {}

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
        expectedSHA512 = settings.expectedSHA512
        rate = settings.maxBytesPerSecond
        if let resume {
            if expected == nil, let hex = resume.expectedSHA256, let digest = SHA256Digest(hex: hex) {
                expected = (digest, .caller)
            } else if expected == nil, let hex = resume.serverSHA256, let header = resume.serverDigestHeader,
                      let digest = SHA256Digest(hex: hex) {
                expected = (digest, header)
            }
            let trusted = resume.trustedRanges(currentBootID: currentBootID())
            var options = settings.engine
            // Another program's bytes are never overwritten by a restart: a changed file fails
            // the download, which then gives them back.
            if resume.adoptedPrefix != nil { options.restartsOnRemoteChange = false }
            machine = DownloadStateMachine(options: options, resume: .init(
                length: resume.length, etag: resume.etag, lastModified: resume.lastModified, done: trusted))
            syncedRanges = resume.syncedRanges
            adoptedPrefix = resume.adoptedPrefix
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
            machine.plan.alignment = pieces.length
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
            if settings.computesSHA256 || expected != nil || expectedSHA512 != nil { startHashing() }
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
            // What arrived counts in the resume data.
            if producingResumeData, !machine.isFinished { handOnHeld() }
            run(machine.cancel())
        }
    }

    /// Pauses every transfer; each keeps its range and connection. New requests wait. The
    /// journal is brought up to date.
    func suspend() {
        multi.queue.async { [self] in
            guard !isSuspended, !machine.isFinished else { return }
            isSuspended = true
            handOnHeld()
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

}
