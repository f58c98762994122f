@testable import Haul
import Testing

private typealias Machine = DownloadStateMachine
private typealias Request = DownloadStateMachine.Request

private func head(_ status: Int, range: String? = nil, length: Int64? = nil, etag: String? = nil,
                  retryAfter: Int? = nil) -> ResponseHead {
    var fields: [(name: String, value: String)] = []
    if let range { fields.append(("Content-Range", range)) }
    if let length { fields.append(("Content-Length", "\(length)")) }
    if let etag { fields.append(("ETag", etag)) }
    if let retryAfter { fields.append(("Retry-After", "\(retryAfter)")) }
    return ResponseHead(status: status, fields: fields)
}

private func range(_ segment: Int, _ from: Int64, _ through: Int64?, ifRange: String? = nil) -> Machine.Action {
    .start(Request(segment: segment, kind: .range, from: from, through: through, ifRange: ifRange))
}

private let probe = Machine.Action.start(Request(segment: 0, kind: .probe, from: 0, through: nil, ifRange: nil))

@Suite("DownloadStateMachine")
struct DownloadStateMachineTests {
    @Test("Start sends the probe: GET with Range bytes=0-")
    func start() {
        var machine = Machine(options: .init(connections: 4, minimumSplit: 10))
        #expect(machine.start() == [probe])
        if case .start(let request) = probe { #expect(request.rangeSpec == "0-") }
    }

    @Test("206 to the probe: preallocate, split, start the other segments with If-Range")
    func probe206() {
        var machine = Machine(options: .init(connections: 4, minimumSplit: 10))
        _ = machine.start()
        let actions = machine.received(head(206, range: "bytes 0-99/100", etag: "\"e\""), for: 0)
        #expect(actions == [.preallocate(length: 100),
                            range(1, 25, 49, ifRange: "\"e\""), range(2, 50, 74, ifRange: "\"e\""),
                            range(3, 75, 99, ifRange: "\"e\"")])
        #expect(machine.rangesSupported)
        #expect(machine.step(for: 0, available: 1000) == .write(offset: 0, count: 25))
    }

    @Test("200 to the probe: one stream with the length preallocated; no steal later")
    func probe200() {
        var machine = Machine(options: .init(connections: 4, minimumSplit: 10))
        _ = machine.start()
        #expect(machine.received(head(200, length: 100), for: 0) == [.preallocate(length: 100)])
        #expect(!machine.rangesSupported)
        _ = machine.advance(0, by: 100)
        #expect(machine.transferEnded(0, .completed) == [.finish(length: 100)])
    }

    @Test("200 without a length: stream to EOF; the length is what arrived")
    func probeNoLength() {
        var machine = Machine(options: .init(connections: 4, minimumSplit: 10))
        _ = machine.start()
        #expect(machine.received(head(200), for: 0) == [.preallocate(length: 0)])
        #expect(machine.step(for: 0, available: 4096) == .write(offset: 0, count: 4096))
        _ = machine.advance(0, by: 4096)
        _ = machine.advance(0, by: 7)
        #expect(machine.transferEnded(0, .completed) == [.finish(length: 4103)])
    }

    @Test("416 with bytes */0 is an empty file; its error body is not written")
    func probeEmpty() {
        var machine = Machine(options: .init())
        _ = machine.start()
        #expect(machine.received(head(416, range: "bytes */0", length: 0), for: 0) == [.preallocate(length: 0)])
        #expect(machine.step(for: 0, available: 20) == .stop)
        #expect(machine.transferEnded(0, .completed) == [.finish(length: 0)])
    }

    @Test("Error statuses fail the probe; their body is refused", arguments: [401, 403, 404, 407, 410])
    func probeError(status: Int) {
        var machine = Machine(options: .init())
        _ = machine.start()
        #expect(machine.received(head(status, length: 9), for: 0) == [])
        #expect(machine.step(for: 0, available: 9) == .stop)
        #expect(machine.transferEnded(0, .failed(.transport(code: 23, message: "write"), .no))
                == [.fail(.httpStatus(status))])
    }

    @Test("503 with Retry-After retries the probe with the server's delay")
    func probe503() {
        var machine = Machine(options: .init(maxRetries: 2))
        _ = machine.start()
        #expect(machine.received(head(503, length: 6, retryAfter: 2), for: 0) == [])
        #expect(machine.transferEnded(0, .completed) == [.retry(segment: 0, attempt: 1, retryAfterSeconds: 2)])
        var fresh = Request(segment: 0, kind: .probe, from: 0, through: nil, ifRange: nil)
        fresh.fresh = true
        #expect(machine.retryDue(0) == [.start(fresh)])
    }

    @Test("A refused connection before any answer fails at once; after an answer it retries")
    func connectFailures() {
        let refused = Machine.Outcome.failed(.transport(code: 7, message: "refused"), .ifServerAnswered)
        var first = Machine(options: .init())
        _ = first.start()
        #expect(first.transferEnded(0, refused) == [.fail(.transport(code: 7, message: "refused"))])

        var later = Machine(options: .init(connections: 2, minimumSplit: 10))
        _ = later.start()
        _ = later.received(head(206, range: "bytes 0-99/100"), for: 0)
        #expect(later.transferEnded(1, refused) == [.retry(segment: 1, attempt: 1, retryAfterSeconds: nil)])
    }

    @Test("A reset mid-segment retries from the cursor; other segments go on")
    func resetRetriesFromCursor() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"e\""), for: 0)
        _ = machine.received(head(206, range: "bytes 50-99/100", etag: "\"e\""), for: 1)
        _ = machine.advance(1, by: 20)
        let reset = Machine.Outcome.failed(.transport(code: 18, message: "partial"), .yes)
        #expect(machine.transferEnded(1, reset) == [.retry(segment: 1, attempt: 1, retryAfterSeconds: nil)])
        // The retry goes out on a fresh connection (the last one may be in a bad state).
        var retry = Request(segment: 1, kind: .range, from: 70, through: 99, ifRange: "\"e\"")
        retry.fresh = true
        #expect(machine.retryDue(1) == [.start(retry)])
    }

    @Test("Retries are bounded; range attempts that keep failing without progress fall back to one stream first")
    func retriesBounded() {
        var machine = Machine(options: .init(connections: 1, minimumSplit: 10, maxRetries: 2))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        let reset = Machine.Outcome.failed(.transport(code: 18, message: "partial"), .yes)
        #expect(machine.transferEnded(0, reset) == [.retry(segment: 0, attempt: 1, retryAfterSeconds: nil)])
        _ = machine.retryDue(0)
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        #expect(machine.transferEnded(0, reset) == [.retry(segment: 0, attempt: 2, retryAfterSeconds: nil)])
        _ = machine.retryDue(0)
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        let fallback = machine.transferEnded(0, reset)
        guard case .start(let whole) = fallback.last else { Issue.record("no fallback: \(fallback)"); return }
        #expect(whole.kind == .whole && machine.singleStream)
        // The one stream's own failures are bounded.
        _ = machine.received(head(200, length: 100), for: whole.segment)
        for attempt in 1...2 {
            #expect(machine.transferEnded(whole.segment, reset) == [.retry(segment: whole.segment, attempt: attempt,
                                                                           retryAfterSeconds: nil)])
            _ = machine.retryDue(whole.segment)
            _ = machine.received(head(200, length: 100), for: whole.segment)
        }
        #expect(machine.transferEnded(whole.segment, reset) == [.fail(.transport(code: 18, message: "partial"))])
    }

    @Test("A Content-Range that does not match the request is refused and retried; repeated, ranges are dropped",
          arguments: ["bytes 51-99/100", "bytes 50-98/100"])
    func wrongContentRange(value: String) {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        for attempt in 1...2 {
            #expect(machine.received(head(206, range: value), for: 1) == [])
            #expect(machine.step(for: 1, available: 10) == .stop)
            let actions = machine.transferEnded(1, .failed(.transport(code: 23, message: "write"), .no))
            #expect(actions == [.retry(segment: 1, attempt: attempt, retryAfterSeconds: nil)])
            _ = machine.retryDue(1)
        }
        // The third wrong answer: ranges are not trusted; one stream without Range from byte 0.
        let actions = machine.received(head(206, range: value), for: 1)
        guard case .start(let request) = actions.last else { Issue.record("no new request: \(actions)"); return }
        #expect(request.kind == .whole && request.rangeSpec == nil)
        #expect(actions.contains(.cancel(segment: 0)))
        #expect(machine.singleStream)
    }

    @Test("A 206 whose Content-Length differs from its Content-Range span is refused")
    func spanMismatch() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        #expect(machine.received(head(206, range: "bytes 50-99/100", length: 46), for: 1) == [])
        #expect(machine.step(for: 1, available: 10) == .stop)
        guard case .retry = machine.transferEnded(1, .completed).last else { Issue.record("no retry"); return }
    }

    @Test("With restarts off, a server that keeps sending wrong ranges fails with invalidContentRange")
    func wrongContentRangeFails() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10, restartsOnRemoteChange: false))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        var last: [Machine.Action] = []
        for _ in 1...3 {
            last = machine.received(head(206, range: "bytes 51-99/100"), for: 1)
            if !last.isEmpty { break }
            _ = machine.transferEnded(1, .completed)
            _ = machine.retryDue(1)
        }
        guard case .fail(.invalidContentRange(let expected, let received)) = last.last else {
            Issue.record("expected invalidContentRange, got \(last)")
            return
        }
        #expect(expected == "bytes 50-99/100")
        #expect(received == "bytes 51-99/100")
    }

    @Test("A 206 without one Content-Range (none, or multipart) falls back to one stream", arguments: [
        head(206), ResponseHead(status: 206, fields: [("Content-Type", "multipart/byteranges; boundary=x")]),
    ])
    func noContentRange(answer: ResponseHead) {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        let actions = machine.received(answer, for: 0)
        guard case .start(let request) = actions.last else { Issue.record("no new request: \(actions)"); return }
        #expect(request.kind == .whole && request.rangeSpec == nil)
        #expect(machine.step(for: 0, available: 10) == .stop)
        #expect(machine.received(head(200, length: 100), for: request.segment) == [.preallocate(length: 100)])
        #expect(machine.step(for: request.segment, available: 1000) == .write(offset: 0, count: 100))
    }

    @Test("A 200 to a ranged request without If-Range: ranges are gone, one stream from byte 0")
    func rangeIgnored() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        let actions = machine.received(head(200, length: 100), for: 1)
        #expect(machine.step(for: 1, available: 10) == .stop)
        guard case .start(let request) = actions.last else { Issue.record("no new request: \(actions)"); return }
        #expect(request.kind == .whole)
        #expect(machine.plan.epoch == 1)
    }

    @Test("The file changed on the server: start over from byte 0, in a new epoch", arguments: [
        (head(206, range: "bytes 50-99/100", etag: "\"b\""), "ETag \"a\" became \"b\""),
        (head(206, range: "bytes 50-99/101", etag: "\"b\""), "its length 100 became 101"),
        (head(200, length: 100, etag: "\"b\""), "ETag \"a\" became \"b\""),
        (head(416, range: "bytes */40"), "bytes 50-99 are no longer there (416): the file got shorter"),
    ] as [(ResponseHead, String)])
    func remoteChange(response: ResponseHead, reason: String) {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
        _ = machine.advance(0, by: 30)
        let restartProbe = Machine.Action.start(Request(segment: 2, kind: .probe, from: 0, through: nil, ifRange: nil))
        #expect(machine.received(response, for: 1)
                == [.cancel(segment: 0), .cancel(segment: 1), .restarted(reason: reason), restartProbe])
        // Old requests can no longer write, and their ends are ignored.
        #expect(machine.step(for: 0, available: 10) == .stop)
        #expect(machine.transferEnded(0, .completed) == [])
        #expect(machine.plan.doneRanges == [])
        // The new version (one segment: 15 bytes < 2 × the minimum split): old bytes never count.
        _ = machine.received(head(206, range: "bytes 0-14/15", etag: "\"c\""), for: 2)
        #expect(machine.step(for: 2, available: 100) == .write(offset: 0, count: 15))
        _ = machine.advance(2, by: 15)
        #expect(machine.transferEnded(2, .completed) == [.finish(length: 15)])
    }

    @Test("With restarts switched off, a changed file fails with remoteFileChanged")
    func remoteChangeFails() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10, restartsOnRemoteChange: false))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
        #expect(machine.received(head(206, range: "bytes 50-99/100", etag: "\"b\""), for: 1).last
                == .fail(.remoteFileChanged(reason: "ETag \"a\" became \"b\"")))
    }

    @Test("Restarts are bounded: a file that keeps changing fails")
    func restartsBounded() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10, maxRestarts: 1))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
        _ = machine.received(head(206, range: "bytes 50-99/100", etag: "\"b\""), for: 1)
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"b\""), for: 2)
        #expect(machine.received(head(206, range: "bytes 50-99/100", etag: "\"c\""), for: 3).last
                == .fail(.remoteFileChanged(reason: "ETag \"b\" became \"c\"")))
    }

    @Test("Resume: the gaps are requested with If-Range, split to use every connection")
    func resume() {
        let resume = Machine.Resume(length: 100, etag: "\"e\"", lastModified: nil, done: [0..<30, 60..<70])
        var machine = Machine(options: .init(connections: 4, minimumSplit: 10), resume: resume)
        #expect(machine.plan.bytesDone == 40)
        let actions = machine.start()
        // Gaps 30..<60 and 70..<100, then the larger halves split: 4 requests.
        #expect(actions == [range(1, 30, 59, ifRange: "\"e\""), range(3, 70, 99, ifRange: "\"e\""),
                            range(4, 45, 59, ifRange: "\"e\""), range(5, 85, 99, ifRange: "\"e\"")])
        #expect(machine.isResumable)
    }

    @Test("Resume without a validator starts over: a partial file cannot be checked")
    func resumeWithoutValidator() {
        let resume = Machine.Resume(length: 100, etag: "W/\"weak\"", lastModified: nil, done: [0..<30])
        var machine = Machine(options: .init(connections: 4, minimumSplit: 10), resume: resume)
        let actions = machine.start()
        #expect(actions.count == 2)
        guard case .restarted = actions.first, case .start(let probe) = actions.last else {
            Issue.record("expected a restart, got \(actions)")
            return
        }
        #expect(probe.kind == .probe)
    }

    @Test("Resume of a complete file finishes at once")
    func resumeComplete() {
        let resume = Machine.Resume(length: 100, etag: "\"e\"", lastModified: nil, done: [0..<100])
        var machine = Machine(options: .init(), resume: resume)
        #expect(machine.start() == [.finish(length: 100)])
    }

    @Test("A finished connection steals half of the largest range, in the endgame down to twice the endgame tail, then twins the tail")
    func stealThenEndgame() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10, endgameMinimumTail: 5))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        _ = machine.received(head(206, range: "bytes 50-99/100"), for: 1)
        _ = machine.advance(0, by: 50)
        // Segment 0 reached its end (its open-ended probe response was cut there).
        #expect(machine.transferEnded(0, .failed(.transport(code: 23, message: "write"), .no))
                == [range(2, 75, 99)])
        #expect(machine.step(for: 1, available: 100) == .write(offset: 50, count: 25))
        _ = machine.received(head(206, range: "bytes 75-99/100"), for: 2)
        _ = machine.advance(2, by: 25)
        _ = machine.advance(1, by: 10)
        // Nothing is left to hand out and 15 < 2 × 10, but 15 ≥ 2 × 5 (the endgame tail): the
        // free connection takes the upper half of segment 1.
        #expect(machine.transferEnded(2, .completed) == [range(3, 67, 74)])
        _ = machine.received(head(206, range: "bytes 67-74/100"), for: 3)
        _ = machine.advance(3, by: 8)
        // Segment 1 has 7 bytes left (60..<67): too few to split, enough to twin.
        #expect(machine.transferEnded(3, .completed) == [range(4, 60, 66)])
        _ = machine.received(head(206, range: "bytes 60-66/100"), for: 4)
        _ = machine.advance(4, by: 7)
        #expect(machine.transferEnded(4, .completed) == [.cancel(segment: 1), .finish(length: 100)])
        #expect(machine.plan.doneRanges == [0..<100])
    }

    @Test("The endgame split is twice the endgame tail near the server, and grows with the wait for a far one")
    func endgameSplitFollowsWait() {
        // Nothing measured yet: twice the tail.
        #expect(Machine.endgameSplit(perConnection: nil, wait: nil, tail: 128 << 10) == 256 << 10)
        // Loopback: 0.2 ms at 8 MiB/s is far below the tail.
        #expect(Machine.endgameSplit(perConnection: 8 * 1_048_576, wait: .microseconds(200), tail: 128 << 10) == 256 << 10)
        // A far server: 100 ms at 8 MiB/s. Each half must last four waits (3.2 MiB), so no range
        // under 6.4 MiB is split: the new request would still be waiting when it ended.
        #expect(Machine.endgameSplit(perConnection: 8 * 1_048_576, wait: .milliseconds(100), tail: 128 << 10)
                == 2 * Int64(8 * 1_048_576 * 0.1 * 4))
    }

    @Test("When nothing is left to hand out, a response that stops short of its end gets a twin after a short pause, not two grace periods")
    func endgamePause() {
        var machine = Machine(options: .init(connections: 2, minimumSplit: 10, endgameMinimumTail: 20))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        _ = machine.received(head(206, range: "bytes 50-99/100"), for: 1)
        _ = machine.advance(1, by: 40)
        _ = machine.advance(0, by: 50)
        // Too little left to split or to twin at once (10 < 20): the connection waits.
        #expect(machine.transferEnded(0, .failed(.transport(code: 23, message: "write"), .no)) == [])
        // Segment 1's last 10 bytes are held back by the server.
        #expect(machine.tick(now: .milliseconds(100)) == [])
        #expect(machine.tick(now: .milliseconds(300)) == [])
        #expect(machine.tick(now: .milliseconds(400)) == [range(2, 90, 99)])
        _ = machine.received(head(206, range: "bytes 90-99/100"), for: 2)
        _ = machine.advance(2, by: 10)
        #expect(machine.transferEnded(2, .completed) == [.cancel(segment: 1), .finish(length: 100)])
    }

    @Test("Cancel stops every running segment")
    func cancel() {
        var machine = Machine(options: .init(connections: 3, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        #expect(machine.cancel() == [.cancel(segment: 0), .cancel(segment: 1), .cancel(segment: 2), .fail(.cancelled)])
        #expect(machine.transferEnded(1, .completed) == [])
    }
}
