import CCurl
import Dispatch
import Foundation

// The receive-rate token bucket.
extension DownloadOperation {
    /// Refills the rate-limit bucket every 20 ms and lets paused transfers go on.
    func startRateTimer() {
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
    func bucketSize(_ rate: Int64) -> Double {
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

    func refill() {
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
}
