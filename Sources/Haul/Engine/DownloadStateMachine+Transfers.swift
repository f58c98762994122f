/// Transfers that end: done, failed and retried, or given up; retries that come due.
extension DownloadStateMachine {
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
}
