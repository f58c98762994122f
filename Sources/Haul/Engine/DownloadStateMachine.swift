/// The life of one download as a value: events in, actions out, no I/O.
///
/// The transfer layer owns one of these per download, feeds it what libcurl reports (response
/// heads, bytes written, transfers that ended, retry timers) and runs the actions it returns.
/// Tests drive it with tables of events and expected actions.
struct DownloadStateMachine: Sendable {
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
    /// The complete length each strong ETag of the URL's answers came with, kept across
    /// restarts: one version of a file has one length (see `lengthContradiction`).
    var lengthsByETag: [String: Int64] = [:]
    var requests: [Int: Request] = [:]
    /// When each running request started and where its segment's cursor was then (for speed).
    var started: [Int: (at: Duration, cursor: Int64)] = [:]
    /// When each running segment's response last moved (wrote or compared a byte), as seen by
    /// `tick`.
    var lastMoved: [Int: (at: Duration, position: Int64)] = [:]
    var mirrors: MirrorSet
    /// The whole file's digest is known (the caller's, a metalink's, or the server's instance
    /// digest) and the file is being hashed, so a file spliced from two versions fails its
    /// check at the end; the transfer layer keeps it up to date as digests come and go.
    var checksumKnown = false
    /// Piece hashes: which pieces are verified and who wrote each (`nil` without a metalink's pieces).
    var pieces: PieceLedger?
    /// A piece failing this often (from every source) ends the download.
    static let maxPieceFailures = 3
    /// A metalink the first response names is being fetched: the split and the finish wait for it.
    var awaitingDescription = false
    /// The shortest wait for a response's first byte seen so far (`measured(wait:)`).
    var responseWait: Duration?
    /// The latest time given by `tick(now:)`.
    var now: Duration = .zero
    /// How many connections run at once (the ceiling, unless it adapts).
    var governor: ConnectionGovernor
    /// Failures found in a response head, applied when that transfer ends.
    var headFailures: [Int: HeadFailure] = [:]
    var failuresByMirror: [Int: Int] = [:]

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

    /// The validator sent with `If-Range`: a strong ETag, else Last-Modified.
    var validator: String? {
        if let etag, !etag.hasPrefix("W/") { return etag }
        return lastModified
    }

    /// Whether the bytes so far can be continued later: the length is known, ranges work and
    /// a validator can tell whether the file changed. Every byte on disk while the download
    /// still waits (for piece checks, or a metalink the server named) is resumable too; only a
    /// download that is finishing is not.
    var isResumable: Bool {
        canBeResumed && phase != .finished
    }

    /// Whether resume data could continue this download (ranges, a length and a validator),
    /// finished or not: a finished one whose name was taken waits in its partial file.
    var canBeResumed: Bool {
        rangesSupported && !singleStream && plan.length != nil && validator != nil
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
           options.identifiedByHashes || options.mirrorsMayDifferInValidators || hasOwnValidators(request.mirror) {
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

    mutating func segmentDone(_ segment: Int) -> [Action] {
        var actions: [Action] = []
        if let other = plan.finish(segment) {
            endRequest(other)
            actions.append(.cancel(segment: other))
        }
        if plan.isComplete {
            return actions + finishNow()
        }
        // The connection is free: take a pending gap, else half of the largest range (in the
        // endgame down to `endgameSplit`), else twin the slowest tail.
        // Last, a segment waiting out a backoff goes now on this connection rather than leave it
        // idle (its scheduled retry then finds it running and does nothing).
        if isChunked, requests.count >= governor.target { return actions }
        if rangesSupported, !singleStream,
           let id = (isChunked ? plan.takePending(chunk: nextChunk()) : plan.takePending()) ?? plan.steal()
            ?? plan.steal(atLeast: endgameSplit)
            ?? plan.addTwin(minimumTail: options.endgameMinimumTail)
            ?? plan.takeWaiting(honouring: Self.longestRetryAfterHonouredWhileIdle) {
            actions.append(start(segment: id, kind: .range))
        }
        return actions
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
