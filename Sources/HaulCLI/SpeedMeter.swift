/// A download's speed over the last few seconds: bytes gained across a sliding window of
/// samples, so bursty servers do not make the figure (or the ETA) swing at every redraw.
struct SpeedMeter {
    /// How far back the speed looks.
    static let window: Duration = .seconds(5)
    private var samples: [(time: ContinuousClock.Instant, bytes: Int64)] = []

    /// Records that `bytes` were done at `time` (called at every redraw).
    mutating func add(_ bytes: Int64, at time: ContinuousClock.Instant) {
        if let last = samples.last, bytes < last.bytes {
            // The download started over: the old samples say nothing about it.
            samples.removeAll()
        }
        samples.append((time, bytes))
        while let first = samples.first, time - first.time > Self.window, samples.count > 2 {
            samples.removeFirst()
        }
    }

    /// Bytes per second over the window; `nil` until half a second has been seen.
    var bytesPerSecond: Double? {
        guard let first = samples.first, let last = samples.last else { return nil }
        let seconds = (last.time - first.time).seconds
        guard seconds >= 0.5 else { return nil }
        return Double(last.bytes - first.bytes) / seconds
    }
}
