/// The life of one download as a value: events in, actions out, no I/O.
///
/// The transfer layer owns one of these per download, feeds it what libcurl reports (response
/// heads, bytes written, transfers that ended, retry timers) and runs the actions it returns.
/// Tests drive it with tables of events and expected actions.
struct DownloadStateMachine: Sendable {
    struct Options: Equatable, Sendable {
        var connections: Int
        var minimumSplit: Int64
        /// Retries per segment before the download fails.
        var maxRetries: Int
        /// Smallest tail worth an endgame twin.
        var endgameMinimumTail: Int64
        /// When the file changes on the server: start over (true) or fail with
        /// `HaulError.remoteFileChanged` (false).
        var restartsOnRemoteChange: Bool
        /// Restarts allowed before a server whose file keeps changing fails the download.
        var maxRestarts: Int
        /// Sources of the same file: the URL (0) and its mirrors.
        var mirrors: Int = 1
        /// Replace a connection running far below its peers (after `slowGrace`) with a new one
        /// on the same remaining range.
        var replacesSlowConnections = true
        /// A connection slower than this fraction of the median of its peers is slow.
        var slowRatio = 0.3
        /// How long a connection runs before its speed is judged.
        var slowGrace: Duration = .seconds(1)
        /// How far each range request reaches across its neighbours' boundaries, so every seam
        /// between two responses is compared from both sides (0: no seam checks).
        var seamOverlap: Int64 = 0
        /// Transfers are paused for a rate limit: a segment that does not move is waiting its
        /// turn, not stalled or slow, so it gets no twin and no replacement.
        var rateLimited = false
        /// Invalid `206` answers (wrong range, wrong length) the download tolerates before it
        /// stops trusting ranges and fetches the file as one stream.
        var maxRangeFaults = 3
        /// Fetch the file as one stream without `Range` from the start (a request that is not a
        /// GET: it cannot be split or repeated).
        var singleStream = false
        /// The file is identified by a metalink's hashes, not by validators: mirrors are held to
        /// the length only (their ETags and Last-Modified differ from server to server).
        var identifiedByHashes = false
        /// The caller vouches that every source serves the same bytes (`haul get --same-file`):
        /// a mirror's own ETag and Last-Modified are not held to the first source's and no
        /// If-Range goes to it; its bytes are still checked at every seam.
        var mirrorsMayDifferInValidators = false
        /// Work is taken in chunks in file order as connections free up (so the done prefix and
        /// the streaming hash behind it grow during the download), instead of one range per
        /// connection from the start.
        var chunked = false
        /// The connection count is found by measuring (`ConnectionGovernor`), with
        /// `connections` as its ceiling. Implies `chunked`.
        var adaptsConnections = false
        /// The largest chunk one request takes.
        var maximumChunk: Int64 = 16 << 20
        /// A chunk lasts about this long at the measured speed of one connection.
        var chunkDuration: Duration = .seconds(1)

        init(connections: Int = 16, minimumSplit: Int64 = 1 << 20, maxRetries: Int = 5,
             endgameMinimumTail: Int64? = nil, restartsOnRemoteChange: Bool = true, maxRestarts: Int = 2,
             mirrors: Int = 1, slowGrace: Duration = .seconds(1), seamOverlap: Int64 = 0) {
            self.mirrors = max(1, mirrors)
            self.seamOverlap = max(0, seamOverlap)
            self.slowGrace = slowGrace
            self.connections = max(1, connections)
            self.minimumSplit = max(1, minimumSplit)
            self.maxRetries = max(0, maxRetries)
            self.endgameMinimumTail = endgameMinimumTail ?? max(1, minimumSplit / 8)
            self.restartsOnRemoteChange = restartsOnRemoteChange
            self.maxRestarts = max(0, maxRestarts)
        }
    }

    /// One HTTP request for a segment.
    struct Request: Equatable, Sendable {
        enum Kind: Equatable, Sendable {
            /// `Range: bytes=0-`: learns the length and whether ranges work.
            case probe
            /// `Range: bytes=from-through`, expects a matching `206`.
            case range
            /// The whole file without `Range` (a server without range support, or one whose ranges
            /// cannot be trusted): bytes already on disk are compared, the rest written.
            case whole
        }
        var segment: Int
        var kind: Kind
        var from: Int64
        /// Last byte asked for (inclusive); `nil` for open-ended.
        var through: Int64?
        /// `If-Range` validator (strong ETag, else Last-Modified).
        var ifRange: String?
        /// Which source to ask: 0 is the URL, others are mirrors.
        var mirror: Int = 0
        /// Use a new connection and do not keep it (after a failure that may have left the
        /// connection in a bad state: garbage after a response, a reset).
        var fresh = false

        /// One past the last byte this request asks for (`Int64.max` when open-ended).
        var requestEnd: Int64 {
            switch kind {
            case .probe, .whole: return .max
            case .range: return through.map { $0 + 1 } ?? .max
            }
        }

        /// The `Range` header value (without `bytes=`), or `nil` for none.
        var rangeSpec: String? {
            switch kind {
            case .probe: return "0-"
            case .range: return through.map { "\(from)-\($0)" } ?? "\(from)-"
            case .whole: return nil
            }
        }
    }

    /// What a resumed download starts from.
    struct Resume: Equatable, Sendable {
        var length: Int64
        var etag: String?
        var lastModified: String?
        /// Ranges on disk that can be trusted.
        var done: [Range<Int64>]
    }

    enum Action: Equatable, Sendable {
        case preallocate(length: Int64)
        /// The file changed on the server: everything starts over from byte 0 (the requests of the
        /// old epoch are cancelled by preceding actions).
        case restarted(reason: String)
        /// A mirror is no longer used for this download (logged).
        case droppedMirror(index: Int, reason: String)
        /// A piece failed its hash; `sources` wrote its bytes (logged, and it is fetched again).
        case badPiece(index: Int, offset: Int64, sources: [Int])
        /// The server gave no validator `If-Range` can use: seam checks are the only guard
        /// against a file that changes (logged once).
        case unverifiable
        /// The connection count changed (`ConnectionGovernor`; logged).
        case connections(target: Int)
        case start(Request)
        case cancel(segment: Int)
        /// Schedule `retryDue(segment)` after a backoff for this attempt (1-based).
        case retry(segment: Int, attempt: Int, retryAfterSeconds: Int?)
        case finish(length: Int64)
        case fail(HaulError)
    }

    /// How a transfer ended, as the transfer layer classifies it.
    enum Outcome: Equatable, Sendable {
        case completed
        case failed(HaulError, Retry)
    }

    /// Whether a failed transfer is worth another try.
    enum Retry: Equatable, Sendable {
        case no
        case yes
        /// Connection failures: retried once the server has answered this download (it may be
        /// refusing extra connections), not when it never answered at all.
        case ifServerAnswered
    }

    enum Phase: Equatable, Sendable {
        case probing
        case transferring
        case finished
        case failed(HaulError)
    }

    let options: Options
    var plan: SegmentPlan
    var phase: Phase = .probing
    var rangesSupported = false
    /// Ranges cannot be trusted (the server answered them wrongly, or bytes from two responses
    /// differed): every request fetches the whole file as one stream.
    var singleStream = false
    /// The probe's response head (status, length, validators); `nil` for a resumed download.
    var probeHead: ResponseHead?
    /// The server's validators for the version being downloaded.
    var etag: String?
    var lastModified: String?
    /// The segment carrying the current probe request.
    var probeSegment = 0
    var restarts = 0
    /// Invalid `206` answers so far.
    var rangeFaults = 0
    /// The length the one stream after a same-version fallback must deliver.
    var fallbackLength: Int64?
    var requests: [Int: Request] = [:]
    /// When each running request started and where its segment's cursor was then (for speed).
    private var started: [Int: (at: Duration, cursor: Int64)] = [:]
    /// When each running segment's cursor last moved, as seen by `tick`.
    private var lastMoved: [Int: (at: Duration, cursor: Int64)] = [:]
    var mirrors: MirrorSet
    /// Piece hashes: which pieces are verified and who wrote each (`nil` without a metalink's pieces).
    var pieces: PieceLedger?
    /// A piece failing this often (from every source) ends the download.
    static let maxPieceFailures = 3
    /// A metalink the first response names is being fetched: the split and the finish wait for it.
    var awaitingDescription = false
    /// The latest time given by `tick(now:)`.
    private var now: Duration = .zero
    /// How many connections run at once (the ceiling, unless it adapts).
    var governor: ConnectionGovernor
    /// Failures found in a response head, applied when that transfer ends.
    var headFailures: [Int: HeadFailure] = [:]
    private var failuresByMirror: [Int: Int] = [:]

    /// Why a response's body was refused, applied when its transfer ends.
    struct HeadFailure: Equatable, Sendable {
        var error: HaulError
        var retryable: Bool
        var retryAfter: Int?
    }

    init(options: Options) {
        self.options = options
        self.plan = SegmentPlan(minimumSplit: options.minimumSplit)
        self.plan.seamOverlap = options.seamOverlap
        self.mirrors = MirrorSet(count: options.mirrors)
        self.governor = Self.governor(for: options)
    }

    /// A download continuing from `resume`: no probe; the missing ranges are requested with
    /// `If-Range`, and any sign of a changed file starts over.
    init(options: Options, resume: Resume) {
        self.options = options
        self.plan = SegmentPlan(resuming: resume.length, done: resume.done, minimumSplit: options.minimumSplit)
        self.plan.seamOverlap = options.seamOverlap
        self.phase = .transferring
        self.rangesSupported = true
        self.etag = resume.etag
        self.lastModified = resume.lastModified
        self.probeSegment = -1
        self.mirrors = MirrorSet(count: options.mirrors)
        self.governor = Self.governor(for: options)
    }

    /// Adapting: from one connection (one per source) up to the ceiling; otherwise the ceiling.
    static func governor(for options: Options) -> ConnectionGovernor {
        ConnectionGovernor(ceiling: options.connections, floor: options.adaptsConnections ? options.mirrors : options.connections)
    }

    /// Whether work is handed out in chunks (`Options.chunked`, or adapting).
    var isChunked: Bool { options.chunked || options.adaptsConnections }

    /// The validator sent with `If-Range`: a strong ETag, else Last-Modified.
    var validator: String? {
        if let etag, !etag.hasPrefix("W/") { return etag }
        return lastModified
    }

    /// Whether the bytes so far can be continued later: the length is known, ranges work and
    /// a validator can tell whether the file changed.
    var isResumable: Bool {
        rangesSupported && !singleStream && plan.length != nil && validator != nil && !plan.isComplete
    }

    var isFinished: Bool {
        switch phase {
        case .finished, .failed: return true
        default: return false
        }
    }

    // MARK: Events

    mutating func start() -> [Action] {
        guard probeSegment < 0 else { return [start(segment: probeSegment, kind: options.singleStream ? .whole : .probe)] }
        // Resumed: hand out the gaps, then split the largest ones until every connection works.
        if plan.isComplete {
            // Every byte is on disk; with pieces, the ones not verified yet are hashed first.
            if let pieces, !pieces.allVerified { return [] }
            phase = .finished
            return [.finish(length: plan.length ?? 0)]
        }
        guard validator != nil else {
            return restart(reason: "the server gave no ETag or Last-Modified, so a partial file cannot be checked")
        }
        if isChunked { return fill() }
        var actions: [Action] = []
        var live = 0
        while live < options.connections, let id = plan.takePending() {
            actions.append(start(segment: id, kind: .range))
            live += 1
        }
        while live < options.connections, let id = plan.steal() {
            actions.append(start(segment: id, kind: .range))
            live += 1
        }
        return actions
    }

    /// A transfer ended (successfully, by our abort, or by failure).
    mutating func transferEnded(_ segment: Int, _ outcome: Outcome) -> [Action] {
        let startCursor = started[segment]?.cursor
        let request = endRequest(segment)
        let headFailure = headFailures.removeValue(forKey: segment)
        guard !isFinished, request != nil, plan.segments[segment].state == .active else { return [] }
        let seg = plan.segments[segment]

        if headFailure == nil, seg.cursor >= seg.end {
            return segmentDone(segment)
        }
        var failure: HeadFailure
        if let headFailure {
            failure = headFailure
        } else {
            switch outcome {
            case .completed:
                if plan.length == nil {
                    plan.setLengthFromEOF(segment: segment)
                    return segmentDone(segment)
                }
                failure = HeadFailure(error: .connectionClosedEarly(expected: seg.end - seg.start,
                                                                    received: seg.cursor - seg.start),
                                      retryable: true)
            case .failed(let error, let retry):
                let answered = probeHead != nil || probeSegment < 0
                failure = HeadFailure(error: error, retryable: retry == .yes || (retry == .ifServerAnswered && answered))
            }
        }
        var actions: [Action] = []
        if let mirror = request?.mirror, mirrors.enabledCount > 1 {
            // With other sources left, a source that failed for good, or twice, is dropped and
            // the segment goes on from the others.
            failuresByMirror[mirror, default: 0] += 1
            if !failure.retryable || failuresByMirror[mirror, default: 0] >= 2,
               mirrors.drop(mirror, reason: "\(failure.error)") {
                actions.append(.droppedMirror(index: mirror, reason: "\(failure.error)"))
                failure.retryable = true
            }
        }
        // An attempt that moved the cursor a fair way was progress: the count starts over, so
        // a server that cuts every response still finishes a large file. Range requests that
        // keep failing without progress while the server answers (cut, stalled) are given up
        // for one stream from byte 0, which such servers often serve fine.
        let moved = headFailure == nil ? (startCursor.map { seg.cursor - $0 } ?? 0) : nil
        let stalled = plan.recordProgress(segment, moved: moved, enough: Self.progressWorthResetting)
        if stalled >= Self.stalledAttemptsBeforeOneStream, failure.retryable, rangesSupported, !singleStream {
            return actions + restart(reason: "range requests keep failing without progress (\(failure.error))",
                                     singleStream: true, sameVersion: true)
        }
        let attempt = plan.recordFailure(segment)
        guard failure.retryable, attempt <= options.maxRetries else {
            return actions + fail(failure.error)
        }
        plan.setState(segment, .waitingToRetry)
        plan.setRetryAfter(segment, failure.retryAfter)
        let retry = Action.retry(segment: segment, attempt: attempt, retryAfterSeconds: failure.retryAfter)
        if let wait = failure.retryAfter, wait > Self.longestRetryAfterWaited {
            // A long pause for this range: the connection takes other work meanwhile (chunked),
            // and takes this range back when nothing else is left.
            let more = isChunked ? fill() : []
            if more.isEmpty, requests.isEmpty {
                // Nothing else can run: stop now (the bytes so far stay resumable) rather than
                // sit idle.
                return actions + fail(failure.error)
            }
            return actions + [retry] + more
        }
        return actions + [retry]
    }

    /// Bytes an attempt must have added for its failure to reset the segment's retry count.
    static let progressWorthResetting: Int64 = 64 << 10
    /// A `Retry-After` up to this many seconds is waited out even with connections idle; a
    /// longer one (a server may say a day) lets an idle connection take the segment at once.
    static let longestRetryAfterHonouredWhileIdle = 10

    /// A longer `Retry-After` with nothing else running ends the download (resumable).
    static let longestRetryAfterWaited = 120

    /// Failed range attempts in a row without that much progress before one stream is tried.
    static let stalledAttemptsBeforeOneStream = 3

    /// The backoff for `segment` has passed.
    mutating func retryDue(_ segment: Int) -> [Action] {
        guard !isFinished, plan.segments[segment].state == .waitingToRetry else { return [] }
        plan.setState(segment, .active)
        if phase == .probing { return [start(segment: segment, kind: singleStream ? .whole : .probe)] }
        if rangesSupported, !singleStream { return [start(segment: segment, kind: .range)] }
        // One stream from byte 0 again: what is on disk is compared, not rewritten.
        return [start(segment: segment, kind: .whole)]
    }

    /// Bytes that two responses delivered for the same offset differ: the server is not
    /// serving one consistent file. Ranges are no longer trusted and the download starts over
    /// as one stream from byte 0 (one response cannot splice two versions); when that is
    /// already the case, or restarts are used up or off, it fails.
    mutating func contentMismatch(at offset: Int64) -> [Action] {
        guard phase == .transferring || phase == .finished else { return [] }
        let reason = "two responses carried different bytes at offset \(offset)"
        guard options.restartsOnRemoteChange, restarts < options.maxRestarts else {
            return fail(.inconsistentContent(offset: offset))
        }
        restarts += 1
        return restart(reason: reason, singleStream: true)
    }

    /// Time passes (about ten times a second): measure each connection since its request
    /// started, fold the speeds into the sources', and replace connections far slower than the
    /// median of their peers with new ones on the same remaining range. A download whose bytes
    /// are all written finishes even if a response comparing a seam has not ended.
    mutating func tick(now: Duration) -> [Action] {
        self.now = now
        guard phase == .transferring else { return [] }
        if plan.isWrittenThrough {
            return finishNow()
        }
        guard rangesSupported, !singleStream else { return [] }
        var actions = options.rateLimited ? [] : twinStalled(now: now)
        if isChunked, let target = governor.observe(now: now, bytes: plan.bytesDone) {
            actions.append(.connections(target: target))
            actions += requests.count > target ? shed() : fill()
        }
        var speeds: [(segment: Int, speed: Double)] = []
        for (segment, request) in requests.sorted(by: { $0.key < $1.key }) where plan.segments[segment].state == .active {
            guard let begin = started[segment], now - begin.at >= options.slowGrace else { continue }
            let elapsed = (now - begin.at).secondsValue
            let speed = Double(plan.segments[segment].cursor - begin.cursor) / elapsed
            speeds.append((segment, speed))
            mirrors.measured(request.mirror, bytesPerSecond: speed)
        }
        // Under a rate limit connections take turns: a slow one is waiting, not slow.
        guard options.replacesSlowConnections, !options.rateLimited, speeds.count >= 3 else { return actions }
        let sorted = speeds.map(\.speed).sorted()
        let median = sorted[sorted.count / 2]
        for (segment, speed) in speeds where speed < options.slowRatio * median {
            let seg = plan.segments[segment]
            guard seg.remaining >= options.minimumSplit, seg.twin == nil, !seg.isTwin else { continue }
            let replacement = plan.replace(segment)
            endRequest(segment)
            actions.append(.cancel(segment: segment))
            actions.append(start(segment: replacement, kind: .range))
        }
        return actions
    }

    /// A segment whose cursor has not moved for two grace periods, while a connection is free,
    /// gets an endgame twin whatever its size: a silent response must not hold the end of a
    /// download for the whole stall timeout.
    private mutating func twinStalled(now: Duration) -> [Action] {
        var actions: [Action] = []
        for segment in requests.keys.sorted() where plan.segments[segment].state == .active {
            let cursor = plan.segments[segment].cursor
            guard let seen = lastMoved[segment], seen.cursor == cursor else {
                lastMoved[segment] = (now, cursor)
                continue
            }
            let seg = plan.segments[segment]
            guard now - seen.at >= options.slowGrace * 2, requests.count < options.connections,
                  seg.twin == nil, !seg.isTwin, seg.remaining > 0, let twin = plan.addTwin(of: segment) else { continue }
            actions.append(start(segment: twin, kind: .range))
        }
        return actions
    }

    /// The download was suspended: segments that did not move meanwhile are not stalled.
    mutating func resumedAfterSuspension() {
        lastMoved.removeAll()
    }

    /// The first server named `count` more sources of the file (RFC 6249 `Link: rel=duplicate`),
    /// before the download is split: they take part like mirrors from the start. With
    /// `ownValidators` (the server gave an instance digest, so the whole-file hash proves the
    /// result) their ETags and Last-Modified are their own: not compared, no `If-Range` to them;
    /// their bytes are still compared at every seam.
    mutating func addSources(_ count: Int, ownValidators: Bool = false) {
        _ = mirrors.add(count, ownValidators: ownValidators)
    }

    /// The caller cancelled the download.
    mutating func cancel() -> [Action] {
        guard !isFinished else { return [] }
        return fail(.cancelled)
    }

    /// A write failed on disk, or the download ran out of time: it stops, keeping what was
    /// written.
    mutating func diskFailed(_ error: HaulError) -> [Action] {
        guard !isFinished else { return [] }
        return fail(error)
    }

    // MARK: Hot path

    @inline(__always)
    func step(for segment: Int, available: Int) -> SegmentPlan.Step {
        plan.step(for: segment, available: available)
    }

    @inline(__always)
    @discardableResult
    mutating func advance(_ segment: Int, by count: Int) -> Bool {
        plan.advance(segment, by: count)
    }

    // MARK: Shared with the response checks

    /// Forgets the request of `segment` (its connection is done or cancelled).
    @discardableResult
    mutating func endRequest(_ segment: Int) -> Request? {
        started[segment] = nil
        lastMoved[segment] = nil
        guard let request = requests.removeValue(forKey: segment) else { return nil }
        mirrors.ended(request.mirror)
        return request
    }

    /// The file on the server is not the one being downloaded: start over or fail.
    mutating func remoteChanged(_ reason: String) -> [Action] {
        guard options.restartsOnRemoteChange, restarts < options.maxRestarts else {
            return fail(.remoteFileChanged(reason: reason))
        }
        restarts += 1
        return restart(reason: reason)
    }

    /// Everything starts over from byte 0 in a new epoch: with a probe, or (`singleStream`)
    /// with one request for the whole file that never uses ranges again.
    /// With `sameVersion` (ranges were dropped, nothing says the file changed), the length and
    /// validators known so far stay: the one stream must deliver that many bytes, so an early
    /// end is a cut, not the file's end.
    mutating func restart(reason: String, singleStream: Bool = false, sameVersion: Bool = false) -> [Action] {
        let known = plan.length
        let (cancelled, probe) = plan.restart()
        var actions: [Action] = []
        for id in cancelled where endRequest(id) != nil {
            actions.append(.cancel(segment: id))
        }
        for id in Array(requests.keys) { endRequest(id) }
        headFailures.removeAll()
        rangesSupported = false
        self.singleStream = self.singleStream || singleStream
        probeHead = nil
        if sameVersion, let known {
            fallbackLength = known
        } else {
            fallbackLength = nil
            etag = nil
            lastModified = nil
        }
        phase = .probing
        probeSegment = probe
        governor = Self.governor(for: options)
        pieces?.reset()
        // A metalink being fetched described the old version: it is not waited for.
        awaitingDescription = false
        actions.append(.restarted(reason: reason))
        actions.append(start(segment: probe, kind: self.singleStream ? .whole : .probe))
        return actions
    }

    /// Refuses the body of `segment`'s response; the failure applies when its transfer ends.
    mutating func reject(_ segment: Int, _ error: HaulError, retryable: Bool, retryAfter: Int? = nil) {
        headFailures[segment] = HeadFailure(error: error, retryable: retryable, retryAfter: retryAfter)
        plan.block(segment)
    }

    mutating func fail(_ error: HaulError) -> [Action] {
        var actions: [Action] = []
        for id in plan.cancelAll() where endRequest(id) != nil {
            actions.append(.cancel(segment: id))
        }
        for id in Array(requests.keys) { endRequest(id) }
        phase = .failed(error)
        actions.append(.fail(error))
        return actions
    }

    mutating func start(segment: Int, kind: Request.Kind) -> Action {
        let seg = plan.segments[segment]
        // Small segments reach across by less, so the overlap never dominates what is fetched.
        let overlap = min(options.seamOverlap, max(1024, (seg.end == .max ? options.seamOverlap * 8 : seg.end - seg.start) / 8))
        var request: Request
        switch kind {
        case .probe:
            request = Request(segment: segment, kind: .probe, from: 0, through: nil, ifRange: nil)
        case .range:
            // Reach back across the seam behind the cursor and forward across the end, so both
            // seams are covered by this response's bytes too.
            // After an attempt that moved nothing, reaching back the whole overlap again could
            // repeat a cut inside it for ever: reach back 1 KiB only, still checking the seam.
            let back = seg.failures > 0 && !seg.lastAttemptMoved ? min(overlap, 1024) : overlap
            let from = max(0, seg.cursor - back)
            var through: Int64? = seg.end == .max ? nil : seg.end - 1
            if let last = through, let length = plan.length {
                through = min(length - 1, last > Int64.max - overlap ? Int64.max : last + overlap)
            }
            request = Request(segment: segment, kind: .range, from: from, through: through, ifRange: validator)
        case .whole:
            request = Request(segment: segment, kind: .whole, from: 0, through: nil, ifRange: nil)
        }
        request.mirror = kind == .range ? mirrors.pick(avoiding: seg.avoidSources) : mirrors.firstEnabled
        // A metalink's mirrors (or mirrors the caller vouches for with --same-file) have
        // validators of their own: `If-Range` with the first server's would make them answer
        // the whole file. The hashes, or the seams, guard them instead.
        if request.mirror != 0,
           options.identifiedByHashes || options.mirrorsMayDifferInValidators || mirrors.mirrors[request.mirror].ownValidators {
            request.ifRange = nil
        }
        request.fresh = seg.failures > 0
        requests[segment] = request
        started[segment] = (now, seg.cursor)
        mirrors.started(request.mirror)
        plan.beginRequest(segment, from: request.from, requestEnd: request.requestEnd)
        return .start(request)
    }

    // MARK: Private

    private mutating func segmentDone(_ segment: Int) -> [Action] {
        var actions: [Action] = []
        if let other = plan.finish(segment) {
            endRequest(other)
            actions.append(.cancel(segment: other))
        }
        if plan.isComplete {
            return actions + finishNow()
        }
        // The connection is free: take a pending gap, else half of the largest range, else twin
        // the slowest tail.
        // Last, a segment waiting out a backoff goes now on this connection rather than leave it
        // idle (its scheduled retry then finds it running and does nothing).
        if isChunked, requests.count >= governor.target { return actions }
        if rangesSupported, !singleStream,
           let id = (isChunked ? plan.takePending(chunk: nextChunk()) : plan.takePending()) ?? plan.steal()
            ?? plan.addTwin(minimumTail: options.endgameMinimumTail)
            ?? plan.takeWaiting(honouring: Self.longestRetryAfterHonouredWhileIdle) {
            actions.append(start(segment: id, kind: .range))
        }
        return actions
    }

    /// Chunked: starts requests until `governor.target` run (pending chunks in file order, then
    /// halves of the largest ranges left).
    mutating func fill() -> [Action] {
        guard rangesSupported, !singleStream, !isFinished, !awaitingDescription else { return [] }
        var actions: [Action] = []
        while requests.count < governor.target,
              let id = plan.takePending(chunk: nextChunk())
                ?? (plan.releaseTail(keeping: nextChunk()) ? plan.takePending(chunk: nextChunk()) : nil) ?? plan.steal() {
            actions.append(start(segment: id, kind: .range))
        }
        return actions
    }

    /// Fewer connections are wanted: the requests furthest into the file stop now and their
    /// ranges go back to pending, for the connections that stay to take in file order.
    mutating func shed() -> [Action] {
        var actions: [Action] = []
        let running = requests.keys.filter { plan.segments[$0].state == .active && !plan.segments[$0].isTwin && plan.segments[$0].twin == nil }
            .sorted { plan.segments[$0].start < plan.segments[$1].start }
        for segment in running.dropFirst(governor.target) where requests.count > governor.target {
            plan.park(segment)
            endRequest(segment)
            actions.append(.cancel(segment: segment))
        }
        return actions
    }

    /// The size of the next chunk: about `chunkDuration` at one connection's measured speed
    /// (before any measurement, a quarter of an even share), leaving work for every connection
    /// the target allows, within `minimumSplit...maximumChunk`.
    func nextChunk() -> Int64 {
        let perConnection = governor.lastSample.map { $0.bytesPerSecond / Double(max(1, $0.count)) }
        var size = perConnection.map { Int64($0 * options.chunkDuration.secondsValue) }
            ?? (plan.length ?? 0) / Int64(max(1, options.connections) * 4)
        size = min(size, plan.pendingBytes / Int64(max(1, governor.target)))
        return min(max(size, options.minimumSplit), options.maximumChunk)
    }

    /// Every byte is written: stop the requests still out and finish (with pieces, once every
    /// piece is verified).
    mutating func finishNow() -> [Action] {
        if awaitingDescription { return [] }
        if let pieces, !pieces.allVerified { return [] }
        var actions: [Action] = []
        for id in plan.cancelAll() where endRequest(id) != nil {
            actions.append(.cancel(segment: id))
        }
        phase = .finished
        actions.append(.finish(length: plan.length ?? 0))
        return actions
    }
}
