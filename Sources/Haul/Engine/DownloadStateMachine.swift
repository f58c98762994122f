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

        init(connections: Int = 16, minimumSplit: Int64 = 1 << 20, maxRetries: Int = 5,
             endgameMinimumTail: Int64? = nil, restartsOnRemoteChange: Bool = true, maxRestarts: Int = 2,
             mirrors: Int = 1, slowGrace: Duration = .seconds(1)) {
            self.mirrors = max(1, mirrors)
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
            /// The whole file again (a server without range support).
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
    private(set) var plan: SegmentPlan
    private(set) var phase: Phase = .probing
    private(set) var rangesSupported = false
    /// The probe's response head (status, length, validators); `nil` for a resumed download.
    private(set) var probeHead: ResponseHead?
    /// The server's validators for the version being downloaded.
    private(set) var etag: String?
    private(set) var lastModified: String?
    /// The segment carrying the current probe request.
    private(set) var probeSegment = 0
    private(set) var restarts = 0
    private var requests: [Int: Request] = [:]
    /// When each running request started and where its segment's cursor was then (for speed).
    private var started: [Int: (at: Duration, cursor: Int64)] = [:]
    private(set) var mirrors: MirrorSet
    /// The latest time given by `tick(now:)`.
    private var now: Duration = .zero
    /// Failures found in a response head, applied when that transfer ends.
    private var headFailures: [Int: (HaulError, retryable: Bool, retryAfter: Int?)] = [:]
    private var failuresByMirror: [Int: Int] = [:]

    init(options: Options) {
        self.options = options
        self.plan = SegmentPlan(minimumSplit: options.minimumSplit)
        self.mirrors = MirrorSet(count: options.mirrors)
    }

    /// A download continuing from `resume`: no probe; the missing ranges are requested with
    /// `If-Range`, and any sign of a changed file starts over.
    init(options: Options, resume: Resume) {
        self.options = options
        self.plan = SegmentPlan(resuming: resume.length, done: resume.done, minimumSplit: options.minimumSplit)
        self.phase = .transferring
        self.rangesSupported = true
        self.etag = resume.etag
        self.lastModified = resume.lastModified
        self.probeSegment = -1
        self.mirrors = MirrorSet(count: options.mirrors)
    }

    /// The validator sent with `If-Range`: a strong ETag, else Last-Modified.
    var validator: String? {
        if let etag, !etag.hasPrefix("W/") { return etag }
        return lastModified
    }

    /// Whether the bytes so far can be continued later: the length is known, ranges work and
    /// a validator can tell whether the file changed.
    var isResumable: Bool {
        rangesSupported && plan.length != nil && validator != nil && !plan.isComplete
    }

    var isFinished: Bool {
        switch phase {
        case .finished, .failed: return true
        default: return false
        }
    }

    // MARK: Events

    mutating func start() -> [Action] {
        guard probeSegment < 0 else { return [start(segment: probeSegment, kind: .probe)] }
        // Resumed: hand out the gaps, then split the largest ones until every connection works.
        if plan.isComplete {
            phase = .finished
            return [.finish(length: plan.length ?? 0)]
        }
        guard validator != nil else {
            return restart(reason: "the server gave no ETag or Last-Modified, so a partial file cannot be checked")
        }
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

    /// A final response head arrived for `segment`'s request.
    mutating func received(_ head: ResponseHead, for segment: Int) -> [Action] {
        guard !isFinished, let request = requests[segment] else { return [] }
        if [408, 425, 429, 500, 502, 503, 504].contains(head.status) {
            reject(segment, .httpStatus(head.status), retryable: true, retryAfter: head.retryAfterSeconds)
            return []
        }
        if request.kind == .range, !mirrors.mirrors[request.mirror].validated {
            if let actions = validateMirror(head, for: request) { return actions }
        }
        switch request.kind {
        case .probe: return receivedProbe(head, segment: segment)
        case .range: return receivedRange(head, for: request)
        case .whole: return receivedWhole(head, for: request)
        }
    }

    /// A transfer ended (successfully, by our abort, or by failure).
    mutating func transferEnded(_ segment: Int, _ outcome: Outcome) -> [Action] {
        let request = endRequest(segment)
        let headFailure = headFailures.removeValue(forKey: segment)
        guard !isFinished, request != nil, plan.segments[segment].state == .active else { return [] }
        let seg = plan.segments[segment]

        if headFailure == nil, seg.cursor >= seg.end {
            return segmentDone(segment)
        }
        var failure: (HaulError, Bool, Int?)
        if let headFailure {
            failure = (headFailure.0, headFailure.retryable, headFailure.retryAfter)
        } else {
            switch outcome {
            case .completed:
                if plan.length == nil {
                    plan.setLengthFromEOF(segment: segment)
                    return segmentDone(segment)
                }
                failure = (.connectionClosedEarly(expected: seg.end - seg.start,
                                                  received: seg.cursor - seg.start), true, nil)
            case .failed(let error, let retry):
                failure = (error, retry == .yes || (retry == .ifServerAnswered && (probeHead != nil || probeSegment < 0)), nil)
            }
        }
        var actions: [Action] = []
        if let mirror = request?.mirror, mirrors.enabledCount > 1 {
            // With other sources left, a source that failed for good, or twice, is dropped and
            // the segment goes on from the others.
            failuresByMirror[mirror, default: 0] += 1
            if !failure.1 || failuresByMirror[mirror, default: 0] >= 2, mirrors.drop(mirror, reason: "\(failure.0)") {
                actions.append(.droppedMirror(index: mirror, reason: "\(failure.0)"))
                failure.1 = true
            }
        }
        let attempt = plan.recordFailure(segment)
        guard failure.1, attempt <= options.maxRetries else {
            return actions + fail(failure.0)
        }
        plan.setState(segment, .waitingToRetry)
        return actions + [.retry(segment: segment, attempt: attempt, retryAfterSeconds: failure.2)]
    }

    /// The backoff for `segment` has passed.
    mutating func retryDue(_ segment: Int) -> [Action] {
        guard !isFinished, plan.segments[segment].state == .waitingToRetry else { return [] }
        plan.setState(segment, .active)
        if phase == .probing { return [start(segment: segment, kind: .probe)] }
        if rangesSupported { return [start(segment: segment, kind: .range)] }
        plan.rewind(segment)
        return [start(segment: segment, kind: .whole)]
    }

    /// Time passes (about ten times a second): measure each connection since its request
    /// started, fold the speeds into the sources', and replace connections far slower than the
    /// median of their peers with new ones on the same remaining range.
    mutating func tick(now: Duration) -> [Action] {
        self.now = now
        guard phase == .transferring, rangesSupported else { return [] }
        var speeds: [(segment: Int, speed: Double)] = []
        for (segment, request) in requests.sorted(by: { $0.key < $1.key }) where plan.segments[segment].state == .active {
            guard let begin = started[segment], now - begin.at >= options.slowGrace else { continue }
            let elapsed = (now - begin.at).secondsValue
            let speed = Double(plan.segments[segment].cursor - begin.cursor) / elapsed
            speeds.append((segment, speed))
            mirrors.measured(request.mirror, bytesPerSecond: speed)
        }
        guard options.replacesSlowConnections, speeds.count >= 3 else { return [] }
        let sorted = speeds.map(\.speed).sorted()
        let median = sorted[sorted.count / 2]
        var actions: [Action] = []
        for (segment, speed) in speeds where speed < options.slowRatio * median {
            let seg = plan.segments[segment]
            guard seg.remaining >= options.minimumSplit, seg.twin == nil, !seg.isTwin else { continue }
            let replacement = plan.replace(segment)
            _ = endRequest(segment)
            actions.append(.cancel(segment: segment))
            actions.append(start(segment: replacement, kind: .range))
        }
        return actions
    }

    /// The caller cancelled the download.
    mutating func cancel() -> [Action] {
        guard !isFinished else { return [] }
        return fail(.cancelled)
    }

    /// A write failed on disk: the download stops, keeping what was written.
    mutating func diskFailed(_ error: HaulError) -> [Action] {
        guard !isFinished else { return [] }
        return fail(error)
    }

    // MARK: Hot path

    @inline(__always)
    func window(for segment: Int, available: Int) -> (offset: Int64, count: Int) {
        plan.window(for: segment, available: available)
    }

    @inline(__always)
    mutating func advance(_ segment: Int, by count: Int) -> Bool {
        plan.advance(segment, by: count)
    }

    // MARK: Private

    private mutating func receivedProbe(_ head: ResponseHead, segment: Int) -> [Action] {
        switch head.status {
        case 206:
            guard let range = head.contentRange, range.first == 0, range.last != nil else {
                return fail(.invalidContentRange(expected: "0-", received: describe(head.contentRange)))
            }
            adopt(head)
            guard let length = range.completeLength else {
                // Ranges work but the length is unknown: stream to the end on one connection.
                plan.setSingleStream(length: nil, probe: segment)
                return []
            }
            rangesSupported = true
            let added = plan.split(length: length, connections: options.connections, probe: segment)
            return [.preallocate(length: length)] + added.map { start(segment: $0, kind: .range) }
        case 200..<300:
            adopt(head)
            plan.setSingleStream(length: head.contentLength, probe: segment)
            return [.preallocate(length: head.contentLength ?? 0)]
        case 416 where head.contentRange?.completeLength == 0:
            // The only answer a server can give to `bytes=0-` for an empty file.
            adopt(head)
            plan.setSingleStream(length: 0, probe: segment)
            return [.preallocate(length: 0)]
        default:
            reject(segment, .httpStatus(head.status), retryable: false, retryAfter: nil)
            return []
        }
    }

    private mutating func adopt(_ head: ResponseHead) {
        if let probe = requests[probeSegment] { mirrors.validated(probe.mirror) }
        probeHead = head
        etag = head.etag
        lastModified = head.lastModified
        phase = .transferring
    }

    private mutating func receivedRange(_ head: ResponseHead, for request: Request) -> [Action] {
        let asked = request.rangeSpec ?? ""
        let length = plan.length
        switch head.status {
        case 206:
            if let total = head.contentRange?.completeLength, let length, total != length {
                return remoteChanged("its length \(length) became \(total)")
            }
            if let expected = etag, !expected.hasPrefix("W/"), let now = head.etag, now != expected {
                return remoteChanged("ETag \(expected) became \(now)")
            }
            if etag == nil, let expected = lastModified, let now = head.lastModified, now != expected {
                return remoteChanged("Last-Modified \(expected) became \(now)")
            }
            guard let range = head.contentRange, range.first == request.from,
                  range.last == (request.through ?? (length.map { $0 - 1 } ?? -1)),
                  range.completeLength == length
            else {
                reject(request.segment, .invalidContentRange(
                    expected: "bytes \(asked)/\(length.map(String.init) ?? "*")",
                    received: describe(head.contentRange)), retryable: false, retryAfter: nil)
                return []
            }
            return []
        case 200 where request.ifRange != nil:
            // If-Range did not match: the server sends the new version whole.
            return remoteChanged("the server answered a ranged If-Range request with the whole file")
        case 200:
            reject(request.segment, .rangeIgnored(range: asked), retryable: false, retryAfter: nil)
            return []
        case 416:
            return remoteChanged("bytes \(asked) are no longer there (416): the file got shorter")
        default:
            reject(request.segment, .httpStatus(head.status), retryable: false, retryAfter: nil)
            return []
        }
    }

    /// A mirror's first response must be a `206` for the same length and validators as the
    /// download's; otherwise the mirror is dropped and the segment retried elsewhere. Returns
    /// `nil` when the response is fine (or the mirror is the last one left).
    private mutating func validateMirror(_ head: ResponseHead, for request: Request) -> [Action]? {
        var problem: String?
        if head.status != 206 {
            problem = "it answered HTTP \(head.status) to a range request"
        } else if let length = plan.length, head.contentRange?.completeLength != length {
            problem = "its file is \(head.contentRange?.completeLength.map(String.init) ?? "of unknown length"), not \(length) bytes"
        } else if let expected = etag, let other = head.etag, other != expected {
            problem = "its ETag \(other) is not \(expected)"
        } else if let expected = lastModified, let other = head.lastModified, other != expected {
            problem = "its Last-Modified \(other) is not \(expected)"
        }
        guard let problem else {
            mirrors.validated(request.mirror)
            return nil
        }
        guard mirrors.drop(request.mirror, reason: problem) else { return nil }
        reject(request.segment, .remoteFileChanged(reason: "mirror \(request.mirror): \(problem)"), retryable: true,
               retryAfter: nil)
        return [.droppedMirror(index: request.mirror, reason: problem)]
    }

    /// Forgets the request of `segment` (its connection is done or cancelled).
    @discardableResult
    private mutating func endRequest(_ segment: Int) -> Request? {
        started[segment] = nil
        guard let request = requests.removeValue(forKey: segment) else { return nil }
        mirrors.ended(request.mirror)
        return request
    }

    /// The file on the server is not the one being downloaded: start over or fail.
    private mutating func remoteChanged(_ reason: String) -> [Action] {
        guard options.restartsOnRemoteChange, restarts < options.maxRestarts else {
            return fail(.remoteFileChanged(reason: reason))
        }
        restarts += 1
        return restart(reason: reason)
    }

    private mutating func restart(reason: String) -> [Action] {
        let (cancelled, probe) = plan.restart()
        var actions: [Action] = []
        for id in cancelled where endRequest(id) != nil {
            actions.append(.cancel(segment: id))
        }
        for id in Array(requests.keys) { endRequest(id) }
        headFailures.removeAll()
        rangesSupported = false
        probeHead = nil
        etag = nil
        lastModified = nil
        phase = .probing
        probeSegment = probe
        actions.append(.restarted(reason: reason))
        actions.append(start(segment: probe, kind: .probe))
        return actions
    }

    private mutating func receivedWhole(_ head: ResponseHead, for request: Request) -> [Action] {
        guard (200..<300).contains(head.status) else {
            reject(request.segment, .httpStatus(head.status), retryable: false, retryAfter: nil)
            return []
        }
        if let expected = plan.length, let length = head.contentLength, length != expected {
            reject(request.segment, .remoteFileChanged(reason: "length \(expected) became \(length)"),
                   retryable: false, retryAfter: nil)
        }
        return []
    }

    /// Refuses the body of `segment`'s response; the failure applies when its transfer ends.
    private mutating func reject(_ segment: Int, _ error: HaulError, retryable: Bool, retryAfter: Int?) {
        headFailures[segment] = (error, retryable, retryAfter)
        plan.block(segment)
    }

    private mutating func segmentDone(_ segment: Int) -> [Action] {
        var actions: [Action] = []
        if let other = plan.finish(segment) {
            endRequest(other)
            actions.append(.cancel(segment: other))
        }
        if plan.isComplete {
            for id in plan.cancelAll() where endRequest(id) != nil {
                actions.append(.cancel(segment: id))
            }
            phase = .finished
            actions.append(.finish(length: plan.length ?? 0))
            return actions
        }
        // The connection is free: take a pending gap, else half of the largest range, else twin
        // the slowest tail.
        if rangesSupported,
           let id = plan.takePending() ?? plan.steal() ?? plan.addTwin(minimumTail: options.endgameMinimumTail) {
            actions.append(start(segment: id, kind: .range))
        }
        return actions
    }

    private mutating func fail(_ error: HaulError) -> [Action] {
        var actions: [Action] = []
        for id in plan.cancelAll() where endRequest(id) != nil {
            actions.append(.cancel(segment: id))
        }
        for id in Array(requests.keys) { endRequest(id) }
        phase = .failed(error)
        actions.append(.fail(error))
        return actions
    }

    private mutating func start(segment: Int, kind: Request.Kind) -> Action {
        let seg = plan.segments[segment]
        let request: Request
        switch kind {
        case .probe:
            request = Request(segment: segment, kind: .probe, from: 0, through: nil, ifRange: nil)
        case .range:
            request = Request(segment: segment, kind: .range, from: seg.cursor,
                              through: seg.end == .max ? nil : seg.end - 1, ifRange: validator)
        case .whole:
            request = Request(segment: segment, kind: .whole, from: 0, through: nil, ifRange: nil)
        }
        var placed = request
        placed.mirror = kind == .range ? mirrors.pick() : mirrors.firstEnabled
        requests[segment] = placed
        started[segment] = (now, seg.cursor)
        mirrors.started(placed.mirror)
        plan.unblock(segment)
        return .start(placed)
    }

    private func describe(_ range: ContentRange?) -> String {
        guard let range else { return "no Content-Range" }
        let total = range.completeLength.map(String.init) ?? "*"
        if let first = range.first, let last = range.last { return "bytes \(first)-\(last)/\(total)" }
        return "bytes */\(total)"
    }
}
