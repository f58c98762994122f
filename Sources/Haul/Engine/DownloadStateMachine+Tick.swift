/// Time passing: connection speeds, slow and stalled connections, the connection count.
extension DownloadStateMachine {
    /// Time passes (about ten times a second): measure each connection since its request
    /// started, fold the speeds into the sources', and replace connections far slower than the
    /// median of their peers with new ones on the same remaining range. A download whose bytes
    /// are all written finishes even if a response comparing a seam has not ended. `busy` is the
    /// transfer loop's time spent working so far (see `ConnectionGovernor.observe`); `waiting`,
    /// the segments whose transfers are paused for the rate limit's tokens (quiet by the
    /// client's choice, not the server's).
    mutating func tick(now: Duration, busy: Duration? = nil, waiting: Set<Int> = []) -> [Action] {
        self.now = now
        guard phase == .transferring else { return [] }
        if plan.isWrittenThrough {
            return finishNow()
        }
        guard rangesSupported, !singleStream else { return [] }
        noteMovement(now: now, waiting: waiting)
        var actions = endWholeResponses(now: now)
        if isFinished { return actions }
        if !options.rateLimited { actions += twinStalled(now: now) }
        if isChunked, let target = governor.observe(now: now, bytes: plan.bytesDone, left: plan.length.map { $0 - plan.bytesDone }, busy: busy) {
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

    /// Records when each running response last moved; one waiting for the rate limit counts as
    /// moving.
    private mutating func noteMovement(now: Duration, waiting: Set<Int>) {
        for segment in requests.keys where plan.segments[segment].state == .active {
            let position = plan.segments[segment].position
            if lastMoved[segment]?.position != position || waiting.contains(segment) { lastMoved[segment] = (now, position) }
        }
    }

    /// Ends each running response whose range is on disk once it has nothing more to give:
    /// every byte the plan takes from it is in (its seam bytes too) and it did not move since
    /// the last tick, or it sent nothing for `endgamePause` (the seam bytes past its range are
    /// a check worth waiting for only while they come; the neighbour checks the same seam from
    /// its side). A response waiting for the rate limit's tokens is not quiet.
    ///
    /// A response without a length of its own (no `Content-Length`, not chunked) ends only when
    /// the server closes the connection. A server that sends the last byte of the range and
    /// keeps the connection open would hold the connection until the stall timeout, and a
    /// twin or a retry of it would meet the same silence. The tick of grace lets a response
    /// whose own end is still in flight (a chunked body's last chunk) end by itself and keep
    /// its connection.
    private mutating func endWholeResponses(now: Duration) -> [Action] {
        var actions: [Action] = []
        for segment in requests.keys.sorted() where plan.segments[segment].state == .active {
            let seg = plan.segments[segment]
            guard seg.cursor >= seg.end, let seen = lastMoved[segment], now > seen.at else { continue }
            guard plan.hasAllItTakes(segment) || now - seen.at >= options.endgamePause else { continue }
            endRequest(segment)
            actions.append(.cancel(segment: segment))
            actions += segmentDone(segment)
        }
        return actions
    }

    /// A segment whose response has not moved for two grace periods, while a connection is
    /// free, gets an endgame twin whatever its size: a silent response must not hold the end of
    /// a download for the whole stall timeout. When nothing is left to hand out, `endgamePause`
    /// is enough: the free connections have nothing else to do, and a server that holds back
    /// the last bytes of a response (nginx's rate limit holds them to its next whole second)
    /// would otherwise keep the whole download waiting.
    private mutating func twinStalled(now: Duration) -> [Action] {
        let patience = plan.pendingBytes == 0 ? min(options.slowGrace * 2, options.endgamePause) : options.slowGrace * 2
        var actions: [Action] = []
        for segment in requests.keys.sorted() where plan.segments[segment].state == .active {
            guard let seen = lastMoved[segment] else { continue }
            let seg = plan.segments[segment]
            guard now - seen.at >= patience, requests.count < options.connections,
                  seg.twin == nil, !seg.isTwin, seg.remaining > 0, let twin = plan.addTwin(of: segment) else { continue }
            actions.append(start(segment: twin, kind: .range))
        }
        return actions
    }

    /// The download was suspended: segments that did not move meanwhile are not stalled.
    mutating func resumedAfterSuspension() {
        lastMoved.removeAll()
    }
}
