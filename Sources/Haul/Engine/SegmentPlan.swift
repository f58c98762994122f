/// Which byte ranges of one download are done, in flight or waiting, and how work is divided.
///
/// A value with no I/O. Every connection works on one `Segment`: a half-open range
/// `start..<end` whose prefix `start..<cursor` is already on disk. Splitting shrinks a
/// segment's `end` and hands the cut-off tail to a new segment (stealing); the endgame adds a
/// *twin* that fetches the same tail as a slow segment, and the first of the two to finish wins.
struct SegmentPlan: Equatable, Sendable {
    /// One connection's share of the file.
    struct Segment: Equatable, Sendable {
        enum State: Equatable, Sendable {
            /// Planned (a gap left by a resumed download) but no connection has it yet.
            case pending
            /// A request is out (or about to be) and bytes may arrive.
            case active
            /// The last attempt failed; a retry is scheduled.
            case waitingToRetry
            /// `start..<end` is on disk (possibly written by its twin).
            case done
            /// Stopped without finishing: its twin finished first, or the download ended.
            case cancelled
        }

        let id: Int
        /// First byte this segment covers.
        var start: Int64
        /// Next byte to write: `start..<cursor` is on disk.
        var cursor: Int64
        /// One past the last byte; `Int64.max` while the length is unknown.
        var end: Int64
        var state: State
        /// Failed attempts so far (0 while the first request runs).
        var failures: Int = 0
        /// The endgame twin fetching the same tail, if any.
        var twin: Int?
        /// Whether this segment was added as an endgame twin (its bytes duplicate another's).
        var isTwin = false
        /// False when the current response was refused (wrong range, error status): its body
        /// must not reach the file.
        var acceptsBody = true
        /// The plan's epoch when the segment was made; a restart starts a new epoch.
        var epoch = 0
        /// Offset of the next byte the current response delivers. Behind `cursor` (a request
        /// that reaches back across a seam) or past `end` (one that reaches forward), its bytes
        /// are compared with the file rather than written.
        var position: Int64
        /// One past the last byte the current request asked for (`Int64.max` when open-ended).
        var requestEnd: Int64 = .max
        /// Whether the last failed attempt moved the cursor.
        var lastAttemptMoved = true
        /// Failed attempts in a row whose body moved the cursor less than a fair way.
        var stalledAttempts = 0
        /// The server's `Retry-After` for the retry this segment waits for, if it gave one.
        var retryAfter: Int?
        /// Sources not to ask for this segment (bit `i` for source `i`): they delivered a bad
        /// piece of it.
        var avoidSources: UInt64 = 0

        init(id: Int, start: Int64, cursor: Int64, end: Int64, state: State) {
            self.id = id
            self.start = start
            self.cursor = cursor
            self.end = end
            self.state = state
            self.position = cursor
        }

        var remaining: Int64 { end - cursor }
    }

    /// What to do with the next bytes of a segment's response.
    enum Step: Equatable, Sendable {
        /// Write them at `offset`: no other response has delivered these bytes.
        case write(offset: Int64, count: Int)
        /// Compare them with the bytes at `offset` (on disk, or once they land): another
        /// response delivers these bytes too, so they form a seam.
        case verify(offset: Int64, count: Int)
        /// Take nothing more: the response is refused, or has delivered all that is wanted.
        case stop
    }

    /// Total length, once known.
    private(set) var length: Int64?
    private(set) var segments: [Segment]
    let minimumSplit: Int64
    /// How far a request reaches past its segment's end so that the seam with the next segment
    /// is covered by bytes from both responses.
    var seamOverlap: Int64 = 0
    /// Chunks are cut at multiples of this (a metalink's piece length), so each piece is
    /// usually written by one response and a bad piece blames one source.
    var alignment: Int64 = 1
    /// Incremented by `restart()`: only segments of the current epoch count. Ids are never
    /// reused, so a late callback for an old request cannot touch new work.
    private(set) var epoch = 0

    /// A plan with one open-ended segment from byte 0: the probe request.
    init(minimumSplit: Int64) {
        self.minimumSplit = max(1, minimumSplit)
        self.length = nil
        self.segments = [Segment(id: 0, start: 0, cursor: 0, end: .max, state: .active)]
    }

    /// A plan for a resumed download: `done` ranges are on disk, the gaps between them are
    /// pending segments.
    init(resuming length: Int64, done: [Range<Int64>], minimumSplit: Int64) {
        self.minimumSplit = max(1, minimumSplit)
        self.length = length
        self.segments = []
        var position: Int64 = 0
        for range in done {
            if range.lowerBound > position { _ = append(start: position, end: range.lowerBound, state: .pending) }
            let id = append(start: range.lowerBound, end: range.upperBound, state: .done)
            segments[id].cursor = range.upperBound
            position = range.upperBound
        }
        if position < length || segments.isEmpty {
            _ = append(start: position, end: length, state: .pending)
        }
    }

    /// Starts over (the file changed on the server): every running segment is cancelled and a
    /// new probe segment begins a new epoch. Returns the cancelled ids and the probe's id.
    mutating func restart() -> (cancelled: [Int], probe: Int) {
        let cancelled = cancelAll()
        epoch += 1
        length = nil
        let probe = append(start: 0, end: .max, state: .active)
        return (cancelled, probe)
    }

    /// Gives a pending segment to a free connection. Returns its id.
    mutating func takePending() -> Int? {
        guard let index = segments.firstIndex(where: { $0.epoch == epoch && $0.state == .pending }) else { return nil }
        segments[index].state = .active
        return index
    }

    /// Gives a free connection the first `chunk` bytes of the lowest pending range (all of it
    /// when less than `chunk + minimumSplit` is left): work is taken in file order, so the done
    /// prefix, and the streaming hash behind it, grows while the download runs. Returns its id.
    mutating func takePending(chunk: Int64) -> Int? {
        var lowest: Int?
        for segment in segments where segment.epoch == epoch && segment.state == .pending {
            if lowest.map({ segment.start < segments[$0].start }) ?? true { lowest = segment.id }
        }
        guard let index = lowest else { return nil }
        segments[index].state = .active
        let size = max(chunk, minimumSplit)
        let cut = aligned(segments[index].cursor + size)
        if segments[index].end - cut >= minimumSplit {
            let end = segments[index].end
            segments[index].end = cut
            _ = append(start: cut, end: end, state: .pending, from: index)
        }
        return index
    }

    /// Makes work for another connection: the running segment with the most left keeps the next
    /// `chunk` bytes and the rest of its range becomes pending (its request goes on to its new
    /// end). Returns whether there was a range large enough to cut.
    mutating func releaseTail(keeping chunk: Int64) -> Bool {
        guard length != nil else { return false }
        let keep = max(chunk, minimumSplit)
        var best: Int?
        for segment in segments where segment.epoch == epoch && segment.state == .active && segment.twin == nil && !segment.isTwin {
            if segment.remaining >= keep + minimumSplit, best.map({ segment.remaining > segments[$0].remaining }) ?? true {
                best = segment.id
            }
        }
        guard let victim = best else { return false }
        let end = segments[victim].end
        let cut = aligned(segments[victim].cursor + keep)
        guard end - cut >= minimumSplit else { return false }
        segments[victim].end = cut
        _ = append(start: cut, end: end, state: .pending, from: victim)
        return true
    }

    /// `offset` rounded up to a multiple of `alignment`.
    func aligned(_ offset: Int64) -> Int64 {
        guard alignment > 1 else { return offset }
        let (quotient, remainder) = offset.quotientAndRemainder(dividingBy: alignment)
        return remainder == 0 ? offset : (quotient + 1) * alignment
    }

    /// Stops `id` at its cursor (what it wrote stays done) and makes the rest of its range
    /// pending again. Late writes of its connection find no room.
    mutating func park(_ id: Int) {
        let end = segments[id].end
        segments[id].end = segments[id].cursor
        segments[id].state = .done
        if end > segments[id].cursor { _ = append(start: segments[id].cursor, end: end, state: .pending, from: id) }
    }

    /// Bytes in pending ranges (planned, not yet taken by a connection).
    var pendingBytes: Int64 {
        segments.reduce(0) { $0 + ($1.epoch == epoch && $1.state == .pending ? $1.remaining : 0) }
    }

    /// Equal ranges covering `0..<length`: `min(connections, length / minimumSplit)` of them,
    /// at least one. The last takes the remainder.
    static func initialRanges(length: Int64, connections: Int, minimumSplit: Int64) -> [Range<Int64>] {
        guard length > 0 else { return [0..<0] }
        let count = max(1, min(Int64(max(connections, 1)), length / max(minimumSplit, 1)))
        let size = length / count
        return (0..<count).map { i in
            let lower = i * size
            return lower..<(i == count - 1 ? length : lower + size)
        }
    }

    // MARK: Length

    /// Records the length and splits: the probe segment keeps the first range, new segments take
    /// the rest. Returns the ids of the new segments (to be started).
    mutating func split(length: Int64, connections: Int, probe: Int = 0) -> [Int] {
        self.length = length
        let ranges = Self.initialRanges(length: length, connections: connections, minimumSplit: minimumSplit)
        segments[probe].end = ranges[0].upperBound
        var added: [Int] = []
        for range in ranges.dropFirst() {
            added.append(append(start: range.lowerBound, end: range.upperBound))
        }
        return added
    }

    /// Records the length; the probe segment keeps the first `chunk` bytes and the rest is one
    /// pending range, cut into chunks as connections take it (`takePending(chunk:)`).
    mutating func split(length: Int64, firstChunk chunk: Int64, probe: Int = 0) {
        self.length = length
        let first = min(length, max(chunk, minimumSplit))
        if length - first < minimumSplit {
            segments[probe].end = length
            return
        }
        segments[probe].end = first
        _ = append(start: first, end: length, state: .pending)
    }

    /// Splits what is left of the running segment `id` into equal ranges as `split` does: `id`
    /// keeps the first, new segments take the rest. Returns the ids of the new segments.
    mutating func splitRemaining(of id: Int, connections: Int) -> [Int] {
        let segment = segments[id]
        guard segment.end != .max, segment.remaining > 0 else { return [] }
        let ranges = Self.initialRanges(length: segment.remaining, connections: connections, minimumSplit: minimumSplit)
        guard ranges.count > 1 else { return [] }
        segments[id].end = segment.cursor + ranges[0].upperBound
        return ranges.dropFirst().map { append(start: segment.cursor + $0.lowerBound, end: segment.cursor + $0.upperBound, from: id) }
    }

    /// Records the length without splitting (a server without range support): one stream.
    mutating func setSingleStream(length: Int64?, probe: Int = 0) {
        self.length = length
        segments[probe].end = length ?? .max
    }

    /// For a stream to EOF: the length is what arrived.
    mutating func setLengthFromEOF(segment id: Int) {
        length = segments[id].cursor
        segments[id].end = segments[id].cursor
    }

    // MARK: Writing (hot path)

    /// What the next `available` bytes of segment `id`'s response are for. Bytes in
    /// `cursor..<end` are written once, by the first response that delivers them; every other
    /// response that delivers the same bytes (a request reaching across a seam, an endgame twin
    /// behind its original, a whole-file retry) has them compared instead.
    @inline(__always)
    func step(for id: Int, available: Int) -> Step {
        let segment = segments[id]
        guard segment.state == .active, segment.acceptsBody, available > 0 else { return .stop }
        let position = segment.position
        if position == segment.cursor, position < segment.end {
            if let twin = segment.twin, segments[twin].cursor > position {
                // The twin already wrote these bytes: compare, never rewrite them.
                let upTo = min(segments[twin].cursor, segment.end)
                return .verify(offset: position, count: Self.clamp(upTo - position, available))
            }
            return .write(offset: position, count: Self.clamp(segment.end - position, available))
        }
        if position < segment.cursor {
            return .verify(offset: position, count: Self.clamp(segment.cursor - position, available))
        }
        let overlapEnd = segment.end > Int64.max - seamOverlap ? Int64.max : segment.end + seamOverlap
        let reach = min(segment.requestEnd, overlapEnd)
        guard position >= segment.end, position < reach else { return .stop }
        return .verify(offset: position, count: Self.clamp(reach - position, available))
    }

    /// Whether segment `id`'s response has given everything the plan takes from it: its range
    /// is on disk, and the bytes past it that `step` would compare (the seam) are compared too,
    /// or were never asked for.
    func hasAllItTakes(_ id: Int) -> Bool {
        let segment = segments[id]
        guard segment.cursor >= segment.end else { return false }
        let overlapEnd = segment.end > Int64.max - seamOverlap ? Int64.max : segment.end + seamOverlap
        return segment.position >= min(segment.requestEnd, overlapEnd)
    }

    @inline(__always)
    private static func clamp(_ room: Int64, _ available: Int) -> Int {
        room < Int64(available) ? Int(room) : available
    }

    /// Moves past `count` bytes of segment `id`'s response that `step` handed out; bytes in the
    /// write region also advance the cursor. Returns whether the segment's range is complete.
    @inline(__always)
    @discardableResult
    mutating func advance(_ id: Int, by count: Int) -> Bool {
        if segments[id].position == segments[id].cursor, segments[id].cursor < segments[id].end {
            segments[id].cursor += Int64(count)
        }
        segments[id].position += Int64(count)
        return segments[id].cursor >= segments[id].end
    }

    /// A new request for segment `id` delivers `from..<requestEnd`; its body is refused until
    /// its head is validated (`unblock`).
    mutating func beginRequest(_ id: Int, from: Int64, requestEnd: Int64) {
        segments[id].position = from
        segments[id].requestEnd = requestEnd
        segments[id].acceptsBody = false
    }

    /// How far the bytes from `offset` on are on disk in this epoch: the end of the written run
    /// that contains `offset`, or `offset` itself when that byte is not written yet.
    /// Called for every write that meets another response's bytes and on every tick, so it walks
    /// the segments in place instead of merging them all (`doneRanges`): a long download on
    /// small chunks has thousands.
    func writtenEnd(from offset: Int64) -> Int64 {
        var end = offset
        var moved = true
        while moved {
            moved = false
            for segment in segments where segment.epoch == epoch && segment.start <= end {
                let written = min(segment.cursor, segment.end)
                if end < written {
                    end = written
                    moved = true
                }
            }
        }
        return end
    }

    /// Whether every byte of the file is written (in flight requests may still be comparing
    /// bytes across a seam).
    var isWrittenThrough: Bool {
        guard let length else { return false }
        if length == 0 { return true }
        return writtenEnd(from: 0) >= length
    }

    // MARK: State

    /// The one place a segment's state changes.
    mutating func setState(_ id: Int, _ state: Segment.State) {
        segments[id].state = state
    }

    /// Refuses the body of the current response (it is an error page or the wrong bytes).
    mutating func block(_ id: Int) {
        segments[id].acceptsBody = false
    }

    /// A new request starts: its body will be accepted once its head passes.
    mutating func unblock(_ id: Int) {
        segments[id].acceptsBody = true
    }

    /// What the attempt that just failed moved (`nil`: its head was refused, so its body is
    /// not judged). A fair way (`enough`) starts the failure count over; less counts as a
    /// stalled attempt. Returns the stalled attempts in a row.
    mutating func recordProgress(_ id: Int, moved: Int64?, enough: Int64) -> Int {
        guard let moved else { return segments[id].stalledAttempts }
        segments[id].lastAttemptMoved = moved > 0
        if moved >= enough {
            segments[id].failures = 0
            segments[id].stalledAttempts = 0
        } else {
            segments[id].stalledAttempts += 1
        }
        return segments[id].stalledAttempts
    }

    /// A segment waiting out a retry backoff, now given to a free connection, unless the server
    /// asked for a pause of at most `honouring` seconds (`Retry-After`), which is kept. Returns
    /// its id.
    mutating func takeWaiting(honouring: Int) -> Int? {
        guard let index = segments.firstIndex(where: {
            $0.epoch == epoch && $0.state == .waitingToRetry && ($0.retryAfter.map { $0 > honouring } ?? true)
        }) else {
            return nil
        }
        segments[index].state = .active
        return index
    }

    mutating func avoid(_ id: Int, sources: UInt64) {
        segments[id].avoidSources = sources
    }

    mutating func setRetryAfter(_ id: Int, _ seconds: Int?) {
        segments[id].retryAfter = seconds
    }

    mutating func recordFailure(_ id: Int) -> Int {
        segments[id].failures += 1
        return segments[id].failures
    }

    /// Marks `id` done. If it has a twin still running, that twin stops: an original whose twin
    /// finished is done too (the twin wrote the same tail), a twin whose original finished is
    /// cancelled. Returns the id whose request must be cancelled, if any.
    mutating func finish(_ id: Int) -> Int? {
        segments[id].state = .done
        guard let other = segments[id].twin else { return nil }
        segments[id].twin = nil
        segments[other].twin = nil
        let wasRunning = segments[other].state == .active || segments[other].state == .waitingToRetry
        if wasRunning {
            segments[other].state = segments[other].isTwin ? .cancelled : .done
        }
        return wasRunning ? other : nil
    }

    /// Every byte of `0..<length` is on disk.
    var isComplete: Bool {
        guard length != nil else { return false }
        return segments.allSatisfy { $0.epoch != epoch || $0.isTwin || $0.state == .done }
    }

    // MARK: Stealing and endgame

    /// Takes the upper half of the largest remaining range if it is at least `smallest` (by
    /// default twice the minimum split). Returns the new segment's id.
    mutating func steal(atLeast smallest: Int64? = nil) -> Int? {
        guard length != nil else { return nil }
        let smallest = max(2, smallest ?? 2 * minimumSplit)
        var best: Int?
        for segment in segments where segment.state == .active && segment.twin == nil && !segment.isTwin {
            if segment.remaining >= smallest,
               best.map({ segment.remaining > segments[$0].remaining }) ?? true {
                best = segment.id
            }
        }
        guard let victim = best else { return nil }
        let oldEnd = segments[victim].end
        let middle = segments[victim].cursor + segments[victim].remaining / 2
        segments[victim].end = middle
        return append(start: middle, end: oldEnd, from: victim)
    }

    /// Endgame: when nothing is left to split, a twin fetches the remaining tail of the segment
    /// with the most left to do (the one that will finish last). Twins are only worth a new
    /// connection for at least `minimumTail` bytes. Returns the twin's id.
    mutating func addTwin(minimumTail: Int64) -> Int? {
        guard length != nil else { return nil }
        var best: Int?
        for segment in segments where segment.state == .active && segment.twin == nil && !segment.isTwin {
            if segment.remaining >= minimumTail,
               best.map({ segment.remaining > segments[$0].remaining }) ?? true {
                best = segment.id
            }
        }
        guard let original = best else { return nil }
        return addTwin(of: original)
    }

    /// A twin of `original` (active, with no twin and not one itself) on its remaining tail.
    mutating func addTwin(of original: Int) -> Int? {
        let segment = segments[original]
        guard segment.state == .active, segment.twin == nil, !segment.isTwin, segment.remaining > 0 else { return nil }
        let id = append(start: segments[original].cursor, end: segments[original].end, from: original)
        segments[id].isTwin = true
        segments[id].twin = original
        segments[original].twin = id
        return id
    }

    /// Ends `id` at its cursor (its bytes so far are done) and hands the rest of its range to a
    /// new segment, for a new connection. Late writes of the old connection find no room.
    mutating func replace(_ id: Int) -> Int {
        let end = segments[id].end
        segments[id].end = segments[id].cursor
        segments[id].state = .done
        return append(start: segments[id].cursor, end: end, from: id)
    }

    /// Stops every segment that is still running or pending (cancel or failure of the download).
    /// Returns the ids that had a request out or scheduled.
    mutating func cancelAll() -> [Int] {
        var stopped: [Int] = []
        for i in segments.indices {
            switch segments[i].state {
            case .active, .waitingToRetry:
                segments[i].state = .cancelled
                stopped.append(i)
            case .pending:
                segments[i].state = .cancelled
            case .done, .cancelled:
                break
            }
        }
        return stopped
    }

    // MARK: Pieces

    /// The bytes of `range` on disk are wrong (a piece failed its hash): they stop counting as
    /// done and become a pending segment of their own, to be fetched again. Written bytes on
    /// either side stay done; a running segment whose done prefix held them keeps running on
    /// what is after. Returns the new pending segment's id.
    mutating func invalidate(_ range: Range<Int64>) -> Int {
        for index in segments.indices where segments[index].epoch == epoch {
            let segment = segments[index]
            let written = segment.start..<min(segment.cursor, segment.end)
            guard written.overlaps(range) else { continue }
            let running = segment.state != .done && segment.state != .cancelled
            if segment.start < range.lowerBound, running || written.upperBound > range.upperBound {
                // What was written before the range stays done, as a segment of its own.
                let before = append(start: segment.start, end: range.lowerBound, state: .done)
                segments[before].cursor = range.lowerBound
            }
            switch segment.state {
            case .active, .waitingToRetry, .pending:
                // A running segment keeps its cursor, end and request; its done part now starts
                // after the range (or at its cursor, if that is inside the range).
                segments[index].start = max(segment.start, min(range.upperBound, segment.cursor))
            case .done, .cancelled:
                if written.upperBound > range.upperBound {
                    // What was written after the range stays done in this segment.
                    segments[index].start = range.upperBound
                } else {
                    // Only what was before the range stays (nothing, if it started inside).
                    let keep = max(segment.start, min(range.lowerBound, written.upperBound))
                    segments[index].cursor = keep
                    segments[index].end = keep
                }
            }
        }
        return append(start: range.lowerBound, end: range.upperBound, state: .pending)
    }

    // MARK: Accounting

    /// The byte ranges on disk, merged and sorted. Twins' overlap counts once; segments of an
    /// earlier epoch hold bytes of another version of the file and do not count.
    var doneRanges: [Range<Int64>] {
        let pieces = segments.filter { $0.epoch == epoch }.map { $0.start..<min($0.cursor, $0.end) }
            .filter { !$0.isEmpty }
            .sorted { $0.lowerBound < $1.lowerBound }
        var merged: [Range<Int64>] = []
        for piece in pieces {
            if let last = merged.last, piece.lowerBound <= last.upperBound {
                merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, piece.upperBound)
            } else {
                merged.append(piece)
            }
        }
        return merged
    }

    /// Bytes on disk (twins' overlap counted once).
    var bytesDone: Int64 { doneRanges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) } }

    /// A new segment for `start..<end`. Taken from segment `from`'s range, it keeps the sources
    /// that one must not ask: a piece they got wrong is not theirs to fetch again in any part.
    private mutating func append(start: Int64, end: Int64, state: Segment.State = .active, from source: Int? = nil) -> Int {
        let id = segments.count
        var segment = Segment(id: id, start: start, cursor: start, end: end, state: state)
        segment.epoch = epoch
        if let source { segment.avoidSources = segments[source].avoidSources }
        segments.append(segment)
        return id
    }
}
