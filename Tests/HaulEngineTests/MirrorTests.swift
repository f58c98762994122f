@testable import Haul
import Testing

private func head(_ status: Int, range: String? = nil, etag: String? = nil, lastModified: String? = nil) -> ResponseHead {
    var fields: [(name: String, value: String)] = []
    if let range { fields.append(("Content-Range", range)) }
    if let etag { fields.append(("ETag", etag)) }
    if let lastModified { fields.append(("Last-Modified", lastModified)) }
    return ResponseHead(status: status, fields: fields)
}

/// A machine with one mirror whose probe answered with `first`; returns it and its mirror's
/// first segment.
private func machineAfterProbe(_ first: ResponseHead, checksumKnown: Bool = false) -> (DownloadStateMachine, Int)? {
    var machine = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10, mirrors: 2))
    machine.checksumKnown = checksumKnown
    _ = machine.start()
    let started = machine.received(first, for: 0).compactMap { action -> DownloadStateMachine.Request? in
        if case .start(let request) = action, request.mirror == 1 { return request } else { return nil }
    }
    guard let request = started.first else { return nil }
    return (machine, request.segment)
}

@Suite("Mirrors and slow connections")
struct MirrorTests {
    @Test("Connections spread over sources in proportion to measured speed")
    func proportional() {
        var set = MirrorSet(count: 2)
        set.measured(0, bytesPerSecond: 100)
        set.measured(1, bytesPerSecond: 300)
        var counts = [0, 0]
        for _ in 0..<8 {
            let pick = set.pick()
            set.started(pick)
            counts[pick] += 1
        }
        #expect(counts == [2, 6])
    }

    @Test("Unmeasured sources get tried; the last source is never dropped")
    func exploreAndKeepLast() {
        var set = MirrorSet(count: 3)
        set.measured(0, bytesPerSecond: 50)
        // Unmeasured sources count as fast as the fastest: all tie, the first wins.
        #expect(set.pick() == 0)
        set.started(0)
        #expect(set.pick() == 1)
        set.started(1)
        #expect(set.pick() == 2)
        let dropped = [set.drop(1, reason: "x"), set.drop(0, reason: "y"), set.drop(2, reason: "z")]
        #expect(dropped == [true, true, false])
        #expect(set.pick() == 2 && set.firstEnabled == 2)
    }

    @Test("Range requests alternate over equal mirrors; a mirror with another ETag is dropped, its segment retried")
    func mirrorWithOtherFile() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 10, mirrors: 2))
        _ = machine.start()
        let actions = machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
        let mirrors = actions.compactMap { action -> Int? in
            if case .start(let request) = action { return request.mirror } else { return nil }
        }
        #expect(mirrors == [1, 0, 1])
        // Mirror 1 answers for segment 1 with another file.
        #expect(machine.received(head(206, range: "bytes 25-49/100", etag: "\"b\""), for: 1)
                == [.droppedMirror(index: 1, reason: "its ETag \"b\" is not the first source's \"a\"")])
        #expect(machine.step(for: 1, available: 10) == .stop)
        #expect(machine.transferEnded(1, .failed(.transport(code: 23, message: "w"), .no))
                == [.retry(segment: 1, attempt: 1, retryAfterSeconds: nil)])
        guard case .start(let retry) = machine.retryDue(1).first else { Issue.record("no retry"); return }
        #expect(retry.mirror == 0)
    }

    @Test("A mirror that shares no validator with the first source serves only when a checksum is known",
          arguments: [
              // (first source's ETag, its Last-Modified, the mirror's ETag, its Last-Modified, checksum known, used)
              (nil, nil, nil, nil, false, false),
              ("\"a\"", nil, nil, nil, false, false),
              ("W/\"a\"", nil, "W/\"a\"", nil, false, false),
              ("\"a\"", "Mon, 02 Nov 2026 10:00:00 GMT", nil, "Mon, 02 Nov 2026 10:00:00 GMT", false, true),
              ("\"a\"", nil, "\"a\"", nil, false, true),
              (nil, nil, nil, nil, true, true),
              ("\"a\"", nil, nil, nil, true, true),
          ] as [(String?, String?, String?, String?, Bool, Bool)])
    func untiedMirror(firstETag: String?, firstModified: String?, mirrorETag: String?, mirrorModified: String?,
                      checksumKnown: Bool, used: Bool) throws {
        let probe = head(206, range: "bytes 0-99/100", etag: firstETag, lastModified: firstModified)
        var (machine, segment) = try #require(machineAfterProbe(probe, checksumKnown: checksumKnown))
        let actions = machine.received(head(206, range: "bytes 50-99/100", etag: mirrorETag, lastModified: mirrorModified),
                                       for: segment)
        if used {
            #expect(actions == [])
            #expect(machine.mirrors.mirrors[1].enabled)
        } else {
            guard case .droppedMirror(index: 1, let reason)? = actions.first else {
                Issue.record("not dropped: \(actions)")
                return
            }
            #expect(reason.contains("nothing ties it to the first source's file"))
            #expect(!machine.mirrors.mirrors[1].enabled)
            // Its segment goes back to the first source.
            #expect(machine.transferEnded(segment, .failed(.transport(code: 23, message: "w"), .no))
                    == [.retry(segment: segment, attempt: 1, retryAfterSeconds: nil)])
            guard case .start(let retry)? = machine.retryDue(segment).first else { Issue.record("no retry"); return }
            #expect(retry.mirror == 0)
        }
    }

    @Test("Mirrors vouched for as the same bytes: no If-Range to them, their own ETag accepted")
    func sameBytesOtherETag() {
        var options = DownloadStateMachine.Options(connections: 4, minimumSplit: 10, mirrors: 2)
        options.mirrorsMayDifferInValidators = true
        var machine = DownloadStateMachine(options: options)
        _ = machine.start()
        let actions = machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
        let requests = actions.compactMap { action -> DownloadStateMachine.Request? in
            if case .start(let request) = action { return request } else { return nil }
        }
        #expect(requests.map(\.mirror) == [1, 0, 1])
        #expect(requests.allSatisfy { ($0.mirror == 0) == ($0.ifRange != nil) })
        #expect(machine.received(head(206, range: "bytes 25-49/100", etag: "\"b\""), for: 1) == [])
        // The length still has to agree.
        #expect(machine.received(head(206, range: "bytes 75-99/200", etag: "\"b\""), for: 3)
                == [.droppedMirror(index: 1, reason: "its file is 200, not 100 bytes")])
    }

    @Test("A connection far below the median is replaced after the grace period")
    func slowReplaced() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 100, slowGrace: .seconds(1)))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-9999/10000", etag: "\"a\""), for: 0)
        for segment in 1...3 {
            let first = Int64(segment) * 2500
            _ = machine.received(head(206, range: "bytes \(first)-\(first + 2499)/10000", etag: "\"a\""), for: segment)
        }
        #expect(machine.tick(now: .milliseconds(500)) == [])
        // Segments 0-2 move 1000 bytes, segment 3 only 50.
        for segment in 0...2 { _ = machine.advance(segment, by: 1000) }
        _ = machine.advance(3, by: 50)
        let actions = machine.tick(now: .seconds(2))
        #expect(actions.first == .cancel(segment: 3))
        guard case .start(let replacement) = actions.last else { Issue.record("no replacement: \(actions)"); return }
        #expect(replacement.from == 7550 && replacement.through == 9999)
        // The old connection's late bytes are refused.
        #expect(machine.step(for: 3, available: 10) == .stop)
        #expect(machine.plan.doneRanges == [0..<1000, 2500..<3500, 5000..<6000, 7500..<7550])
    }

    @Test("No replacement when everyone is equally slow, or when replacement is off", arguments: [true, false])
    func noReplacement(replacementOn: Bool) {
        var options = DownloadStateMachine.Options(connections: 4, minimumSplit: 100, slowGrace: .seconds(1))
        options.replacesSlowConnections = replacementOn
        var machine = DownloadStateMachine(options: options)
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-9999/10000", etag: "\"a\""), for: 0)
        // With replacement on, all are equal; with it off, segment 3 crawls but stays.
        for segment in 0...3 { _ = machine.advance(segment, by: replacementOn || segment != 3 ? 300 : 10) }
        #expect(machine.tick(now: .seconds(2)) == [])
    }

    @Test("Link mirrors with own validators get no If-Range and keep serving with another ETag while a checksum stands; otherwise they are held")
    func linkMirrorValidators() {
        // A restart to another version can lose the server's digest the mirrors were admitted on.
        for (ownValidators, checksumKnown) in [(true, true), (true, false), (false, true)] {
            let own = ownValidators && checksumKnown
            var machine = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10))
            _ = machine.start()
            machine.addSources(1, ownValidators: ownValidators)
            machine.checksumKnown = checksumKnown
            let started = machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
                .compactMap { action -> DownloadStateMachine.Request? in if case .start(let request) = action { request } else { nil } }
            #expect(started.map(\.mirror) == [1])
            #expect(started[0].ifRange == (own ? nil : "\"a\""))
            let answer = machine.received(head(206, range: "bytes 50-99/100", etag: "\"b\""), for: started[0].segment)
            #expect(answer == (own ? [] : [.droppedMirror(index: 1, reason: "its ETag \"b\" is not the first source's \"a\"")]))
        }
    }
}
