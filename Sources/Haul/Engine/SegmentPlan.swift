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

        var remaining: Int64 { end - cursor }
    }

    /// Total length, once known.
    private(set) var length: Int64?
    private(set) var segments: [Segment]
    let minimumSplit: Int64
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

    /// How many of `available` bytes segment `id` may still take, and where they go.
    @inline(__always)
    func window(for id: Int, available: Int) -> (offset: Int64, count: Int) {
        let segment = segments[id]
        guard segment.state == .active, segment.acceptsBody else { return (segment.cursor, 0) }
        let room = segment.end - segment.cursor
        return (segment.cursor, room < Int64(available) ? Int(room) : available)
    }

    /// Advances the cursor after `count` bytes were written. Returns whether the end is reached.
    @inline(__always)
    mutating func advance(_ id: Int, by count: Int) -> Bool {
        segments[id].cursor += Int64(count)
        return segments[id].cursor >= segments[id].end
    }

    /// Restarts a segment's cursor at its start (a server without ranges can only resend all).
    mutating func rewind(_ id: Int) {
        segments[id].cursor = segments[id].start
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

    /// Takes the upper half of the largest remaining range if it is at least twice the minimum
    /// split. Returns the new segment's id.
    mutating func steal() -> Int? {
        guard length != nil else { return nil }
        var best: Int?
        for segment in segments where segment.state == .active && segment.twin == nil && !segment.isTwin {
            if segment.remaining >= 2 * minimumSplit,
               best.map({ segment.remaining > segments[$0].remaining }) ?? true {
                best = segment.id
            }
        }
        guard let victim = best else { return nil }
        let oldEnd = segments[victim].end
        let middle = segments[victim].cursor + segments[victim].remaining / 2
        segments[victim].end = middle
        return append(start: middle, end: oldEnd)
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
        let id = append(start: segments[original].cursor, end: segments[original].end)
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
        return append(start: segments[id].cursor, end: end)
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

    private mutating func append(start: Int64, end: Int64, state: Segment.State = .active) -> Int {
        let id = segments.count
        var segment = Segment(id: id, start: start, cursor: start, end: end, state: state)
        segment.epoch = epoch
        segments.append(segment)
        return id
    }
}
