/// How many connections one download should use, found by measuring: a value with no I/O.
///
/// The configured connection count is a ceiling, not a quota. The download starts on one
/// connection (the probe) and measures its throughput over a short window; unless the transfer
/// loop was busy nearly all of that window (then more connections on it cannot help), it tries
/// the ceiling for a window. If the aggregate rose by more than `margin`, the extra connections
/// help (a server or path that limits each connection): the governor keeps about as many as the
/// gain asks for, checking that the smaller count holds the speed, but only when enough of the
/// download is left for a wrong try to cost little (`trimHorizon`). If it did not rise, they cost
/// CPU and kernel time for nothing (an unthrottled link, a busy disk): it goes back. While it
/// holds a count below the ceiling it tries again now and then with twice as many (and goes on
/// doubling while the throughput keeps rising), since servers and paths change.
///
/// The transfer layer reports time and bytes on disk (`observe`); the state machine starts new
/// requests while fewer than `target` run, and lets surplus connections end with their current
/// (small) ranges.
struct ConnectionGovernor: Equatable, Sendable {
    /// Throughput measured over one window at one connection count.
    struct Sample: Equatable, Sendable {
        var count: Int
        var bytesPerSecond: Double
    }

    struct Mark: Equatable, Sendable {
        var at: Duration
        var bytes: Int64
        var busy: Duration?
    }

    enum Stage: Equatable, Sendable {
        /// Measuring the current count as the baseline of the next try.
        case measuring
        /// Trying more connections than `base` had.
        case tryingMore(base: Sample)
        /// Trying fewer than `best` had, after more helped: do fewer do as well?
        case tryingFewer(best: Sample)
        /// Keeping the current count; the next try is due at `since + reprobeInterval`.
        case holding(since: Duration)
    }

    let ceiling: Int
    let floor: Int
    private(set) var target: Int
    private(set) var stage: Stage = .measuring
    /// How long each measurement lasts.
    var window: Duration = .milliseconds(200)
    /// How long the first two last at least (one connection, then the ceiling): every moment
    /// on one connection where many would help is lost, and every moment on many where one does
    /// as well costs CPU. The first try's answer is rarely close: a limit per connection
    /// multiplies the throughput, a link one connection fills leaves it flat. The transfer layer
    /// ticks first this long after the probe's head, then every 100 ms.
    var firstWindow: Duration = .milliseconds(50)
    private var windowsTaken = 0
    /// Time after a change before measuring, so new connections are up and old ones have ended.
    var settle: Duration = .milliseconds(100)
    /// A try must raise the throughput by this fraction to count as helping.
    var margin = 0.15
    /// A transfer loop working this fraction of a window or more is saturated: every connection
    /// runs on it, so more of them could move at most 1 / this as many bytes (a CPU-bound
    /// machine, TLS on a fast link, a disk that makes writes wait), and none are tried.
    var saturated = 0.8
    /// How long a count below the ceiling is held before more connections are tried again.
    var reprobeInterval: Duration = .seconds(5)
    /// The latest measurement.
    private(set) var lastSample: Sample?

    /// After fewer connections were kept because they held the speed of more: that better
    /// sample. A later window well below it means the fewer were lucky once; more come back.
    private var reference: Sample?
    /// Windows of the current try measured again (see `maxExtensions`).
    private var extensions = 0
    /// A try that moves far less than the count before it did is not believed at once: servers
    /// that shape by the second (nginx's `limit_rate`) send nothing for part of each second, so a
    /// short window can fall in a silence. Up to this many more windows are measured.
    var maxExtensions = 8
    private var changedAt: Duration?
    private var windowStart: Mark?
    private var triedCeiling = false
    /// A try of fewer connections is made only while the rest of the download would last at
    /// least this long at the measured speed. Short windows misjudge servers that send in bursts
    /// (nginx's `limit_rate` sends ahead at each request's start, then pauses), so the gain can
    /// read far below what the connections really add; a wrong try costs a window at a fraction
    /// of the speed, a few percent of a long download, up to half of a short one. Staying at the
    /// count that helped costs only the CPU of the extra connections.
    var trimHorizon: Duration = .seconds(10)

    /// `ceiling` connections at most; at least `floor` (every mirror gets one), starting there.
    init(ceiling: Int, floor: Int = 1) {
        self.ceiling = max(1, ceiling)
        self.floor = min(max(1, floor), self.ceiling)
        self.target = self.floor
        if self.target >= self.ceiling { stage = .holding(since: .zero) }
    }

    /// Time `now` since the download began, `bytes` on disk so far, `left` still to fetch (nil:
    /// unknown, as good as endless) and the time the transfer loop has spent working so far
    /// (`busy`; nil: not measured). Returns the new target when it changes. With
    /// `floor == ceiling` (a fixed count) it only measures (`lastSample`, for chunk sizes).
    mutating func observe(now: Duration, bytes: Int64, left: Int64? = nil, busy: Duration? = nil) -> Int? {
        guard let since = changedAt else {
            // The first call comes with the probe's head: the first window starts there.
            changedAt = now
            windowStart = Mark(at: now, bytes: bytes, busy: busy)
            return nil
        }
        guard let start = windowStart else {
            if now - since >= settle { windowStart = Mark(at: now, bytes: bytes, busy: busy) }
            return nil
        }
        guard now - start.at >= (windowsTaken < 2 ? firstWindow : window) else { return nil }
        windowsTaken += 1
        let sample = Sample(count: target, bytesPerSecond: Double(bytes - start.bytes) / (now - start.at).secondsValue)
        let loopSaturated = busy.flatMap { busy in start.busy.map { (busy - $0) / (now - start.at) >= saturated } } ?? false
        windowStart = Mark(at: now, bytes: bytes, busy: busy)
        lastSample = sample
        guard ceiling > floor else { return nil }
        let before = target
        switch stage {
        case .measuring where loopSaturated:
            stage = .holding(since: now)
        case .measuring:
            // The first try goes straight to the ceiling (one window tells whether connections
            // help at all); later tries double.
            let more = triedCeiling ? min(ceiling, target * 2) : ceiling
            triedCeiling = true
            stage = .tryingMore(base: sample)
            set(more, now: now)
        case .tryingMore(let base):
            if sample.bytesPerSecond > 0, sample.bytesPerSecond > base.bytesPerSecond * (1 + margin) {
                // They helped. Each of the base's connections did base/count; the gain asks for
                // about gain × base.count, with a fifth more for headroom.
                let gain = sample.bytesPerSecond / max(base.bytesPerSecond, 1)
                let enough = Int(min(Double(ceiling) * 2, (Double(base.count) * gain * 1.2).rounded(.up)))
                let lasting = left.map { Double($0) / sample.bytesPerSecond >= trimHorizon.secondsValue } ?? true
                if enough < target, lasting {
                    stage = .tryingFewer(best: sample)
                    set(enough, now: now)
                } else if enough >= target, target < ceiling {
                    // Still rising with every connection added: keep adding.
                    stage = .tryingMore(base: sample)
                    set(min(ceiling, target * 2), now: now)
                } else {
                    stage = .holding(since: now)
                }
            } else if sample.bytesPerSecond < base.bytesPerSecond * (1 - 2 * margin) || sample.bytesPerSecond == 0,
                      extensions < maxExtensions {
                // Far slower with more connections: not how a full link behaves (more cost it a
                // few percent), more likely a silence of the server's. Measure again.
                extensions += 1
            } else {
                stage = .holding(since: now)
                set(base.count, now: now)
            }
        case .tryingFewer(let best):
            stage = .holding(since: now)
            if sample.bytesPerSecond < best.bytesPerSecond * (1 - margin / 2) {
                set(best.count, now: now)
            } else {
                reference = best
            }
        case .holding(let since):
            if let better = reference, target < better.count, sample.bytesPerSecond < better.bytesPerSecond * (1 - margin) {
                // The fewer connections do not hold the speed after all (one lucky window, or
                // the server's speeds changed): back to the count that had it.
                reference = nil
                stage = .holding(since: now)
                set(better.count, now: now)
            } else if target < ceiling, now - since >= reprobeInterval, !loopSaturated {
                // This window is the baseline: try more right away (the ceiling if the first
                // try was skipped for a saturated loop).
                stage = .tryingMore(base: sample)
                set(triedCeiling ? min(ceiling, target * 2) : ceiling, now: now)
                triedCeiling = true
            }
        }
        return target == before ? nil : target
    }

    private mutating func set(_ count: Int, now: Duration) {
        let clamped = min(ceiling, max(floor, count))
        guard clamped != target else { return }
        target = clamped
        changedAt = now
        extensions = 0
        windowStart = nil
    }
}
