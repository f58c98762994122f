@testable import Haul
import Testing

private func head(_ status: Int, range: String? = nil, length: Int64? = nil, etag: String? = nil,
                  lastModified: String? = nil) -> ResponseHead {
    var fields: [(name: String, value: String)] = []
    if let range { fields.append(("Content-Range", range)) }
    if let length { fields.append(("Content-Length", "\(length)")) }
    if let etag { fields.append(("ETag", etag)) }
    if let lastModified { fields.append(("Last-Modified", lastModified)) }
    return ResponseHead(status: status, fields: fields)
}

private func requests(_ actions: [DownloadStateMachine.Action]) -> [DownloadStateMachine.Request] {
    actions.compactMap { if case .start(let request) = $0 { request } else { nil } }
}

@Suite("Seams: overlapping requests, first writer wins, validators")
struct SeamTests {
    @Test("Range requests reach across both neighbours' boundaries")
    func overlappingRequests() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 10, seamOverlap: 5))
        _ = machine.start()
        let started = requests(machine.received(head(206, range: "bytes 0-99/100", etag: "\"e\""), for: 0))
        #expect(started.map(\.rangeSpec) == ["20-54", "45-79", "70-99"])
    }

    @Test("Bytes behind the cursor and past the end are compared, the rest written once")
    func steps() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 10, seamOverlap: 5))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"e\""), for: 0)
        _ = machine.received(head(206, range: "bytes 20-54/100", length: 35, etag: "\"e\""), for: 1)
        // Segment 1 (25..<50): 20..<25 is the seam with segment 0, compared.
        #expect(machine.step(for: 1, available: 100) == .verify(offset: 20, count: 5))
        machine.advance(1, by: 5)
        #expect(machine.step(for: 1, available: 100) == .write(offset: 25, count: 25))
        #expect(!machine.plan.hasAllItTakes(1))
        machine.advance(1, by: 25)
        // The range is whole, but the seam past it is still to compare.
        #expect(!machine.plan.hasAllItTakes(1))
        #expect(machine.step(for: 1, available: 100) == .verify(offset: 50, count: 5))
        machine.advance(1, by: 5)
        #expect(machine.step(for: 1, available: 100) == .stop)
        #expect(machine.plan.hasAllItTakes(1))
        #expect(machine.plan.segments[1].cursor == 50)
        // The probe stream runs on past its end (25) only as far as the overlap.
        machine.advance(0, by: 25)
        #expect(machine.step(for: 0, available: 100) == .verify(offset: 25, count: 5))
        #expect(!machine.plan.hasAllItTakes(0))
        machine.advance(0, by: 5)
        #expect(machine.plan.hasAllItTakes(0))
    }

    @Test("An endgame twin compares what its original already wrote, and the reverse")
    func twins() {
        var plan = SegmentPlan(minimumSplit: 10)
        _ = plan.split(length: 40, connections: 2)
        plan.advance(0, by: 20)
        _ = plan.finish(0)
        plan.advance(1, by: 5)
        let twin = plan.addTwin(minimumTail: 4)!
        #expect(plan.step(for: twin, available: 100) == .write(offset: 25, count: 15))
        plan.advance(twin, by: 6)
        // The original is behind its twin: it compares 25..<31 and then writes.
        #expect(plan.step(for: 1, available: 100) == .verify(offset: 25, count: 6))
        plan.advance(1, by: 6)
        #expect(plan.step(for: 1, available: 100) == .write(offset: 31, count: 9))
        plan.advance(1, by: 9)
        #expect(plan.step(for: twin, available: 100) == .verify(offset: 31, count: 9))
    }

    @Test("A whole-file retry compares what is on disk and writes only the rest")
    func wholeRetry() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(200, length: 100), for: 0)
        machine.advance(0, by: 40)
        _ = machine.transferEnded(0, .failed(.transport(code: 56, message: "reset"), .yes))
        let retry = requests(machine.retryDue(0))
        #expect(retry.first?.kind == .whole)
        _ = machine.received(head(200, length: 100), for: 0)
        #expect(machine.step(for: 0, available: 100) == .verify(offset: 0, count: 40))
        machine.advance(0, by: 40)
        #expect(machine.step(for: 0, available: 100) == .write(offset: 40, count: 60))
    }

    @Test("A seam mismatch starts over as one stream from byte 0; a second one fails")
    func mismatch() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 10, maxRestarts: 1, seamOverlap: 5))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        let actions = machine.contentMismatch(at: 25)
        #expect(actions.contains(.restarted(reason: "two responses carried different bytes at offset 25")))
        guard let request = requests(actions).last else { Issue.record("no request"); return }
        #expect(request.kind == .whole && request.rangeSpec == nil)
        _ = machine.received(head(200, length: 100), for: request.segment)
        #expect(machine.contentMismatch(at: 3).last == .fail(.inconsistentContent(offset: 3)))
    }

    @Test("Validators: weak ETags compared weakly, a vanished or new validator is a change", arguments: [
        (nil, nil, "W/\"a\"", nil),
        ("W/\"b\"", "ETag W/\"a\" became W/\"b\"", "W/\"a\"", nil),
        (nil, "its ETag W/\"a\" disappeared", "W/\"a\"", "absent"),
        ("\"x\"", "an ETag \"x\" appeared", nil, nil),
    ] as [(String?, String?, String?, String?)])
    func validators(later: String?, change: String?, first: String?, marker: String?) {
        var machine = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: first), for: 0)
        let laterETag = marker == "absent" ? nil : (later ?? first)
        let actions = machine.received(head(206, range: "bytes 50-99/100", etag: laterETag), for: 1)
        if let change {
            #expect(actions.contains(.restarted(reason: change)))
        } else {
            #expect(actions == [])
            #expect(machine.step(for: 1, available: 10) == .write(offset: 50, count: 10))
        }
    }

    @Test("Only a strong validator goes into If-Range; a weak-only server is unverifiable")
    func unverifiable() {
        var machine = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        let actions = machine.received(head(206, range: "bytes 0-99/100", etag: "W/\"v\""), for: 0)
        #expect(actions.first == .unverifiable)
        #expect(requests(actions).allSatisfy { $0.ifRange == nil })
    }

    @Test("A download whose bytes are all written finishes on the next tick")
    func writtenThroughFinishes() {
        var machine = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10, seamOverlap: 5))
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100"), for: 0)
        _ = machine.received(head(206, range: "bytes 45-99/100"), for: 1)
        machine.advance(0, by: 50)
        machine.advance(1, by: 5)
        machine.advance(1, by: 50)
        // Segment 0 is still comparing its overlap; nothing is missing.
        #expect(machine.tick(now: .seconds(1)).last == .finish(length: 100))
    }

    @Test("One strong ETag given two lengths fails the download, across the fallback to one stream; weak ETags and other ETags are not held to it")
    func oneVersionOneLength() {
        var machine = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10))
        _ = machine.start()
        // The probe's Content-Length disagrees with its own Content-Range, every time.
        var actions: [DownloadStateMachine.Action] = []
        var segment = 0
        for _ in 0..<3 {
            actions = machine.received(head(206, range: "bytes 0-99/100", length: 90, etag: "\"e\""), for: segment)
            #expect(!actions.contains { if case .fail = $0 { true } else { false } })
            if let next = requests(actions).first { segment = next.segment }
            _ = machine.transferEnded(0, .failed(.transport(code: 23, message: "refused"), .yes))
            _ = machine.retryDue(0)
        }
        // After the fallback to one stream, the whole file comes with the short length.
        #expect(actions.contains { if case .restarted = $0 { true } else { false } })
        #expect(requests(actions).first?.rangeSpec == nil)
        let whole = machine.received(head(200, length: 90, etag: "\"e\""), for: segment)
        #expect(whole.contains { if case .fail(.remoteFileChanged) = $0 { true } else { false } })

        // A length change under the same strong ETag is no new version: it fails at once.
        var changed = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10))
        _ = changed.start()
        _ = changed.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
        let failed = changed.received(head(206, range: "bytes 50-99/101", etag: "\"a\""), for: 1)
        #expect(failed.last == .fail(.remoteFileChanged(
            reason: "its answers give one version (ETag \"a\") two lengths, 100 and 101 bytes, so neither can be trusted")))

        var weak = DownloadStateMachine(options: .init(connections: 2, minimumSplit: 10))
        #expect(weak.lengthContradiction(head(206, range: "bytes 0-99/100", etag: "W/\"e\"")) == nil)
        #expect(weak.lengthContradiction(head(200, length: 90, etag: "W/\"e\"")) == nil)
        #expect(weak.lengthContradiction(head(200, length: 90, etag: "\"f\"")) == nil)
        #expect(weak.lengthContradiction(head(206, range: "bytes 0-9/90", etag: "\"f\"")) == nil)
        #expect(weak.lengthContradiction(head(206, range: "bytes 0-9/100", etag: "\"f\"")) != nil)
    }

    /// Segment 0 (the probe, `bytes=0-`) owns 0..<50 and takes 50..<55 to compare the seam.
    private func twoSegments(rateLimited: Bool = false) -> DownloadStateMachine {
        var options = DownloadStateMachine.Options(connections: 2, minimumSplit: 10, seamOverlap: 5)
        options.rateLimited = rateLimited
        var machine = DownloadStateMachine(options: options)
        _ = machine.start()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"e\""), for: 0)
        return machine
    }

    private func ended(_ actions: [DownloadStateMachine.Action], _ segment: Int) -> Bool {
        actions.contains(.cancel(segment: segment))
    }

    @Test("A response whose range and seam are in ends one tick after it stops, whether or not the server ends it, rate limit or not")
    func wholeResponseEnds() {
        for rateLimited in [false, true] {
            var machine = twoSegments(rateLimited: rateLimited)
            machine.advance(0, by: 55)
            #expect(machine.plan.hasAllItTakes(0))
            // The tick that sees it arrive leaves it the time to end by itself.
            #expect(!ended(machine.tick(now: .seconds(1)), 0))
            let actions = machine.tick(now: .milliseconds(1100))
            #expect(ended(actions, 0))
            // Its connection is free again: it takes half of what segment 1 has left.
            #expect(requests(actions).map(\.rangeSpec) == ["70-99"])
            #expect(machine.plan.segments[0].state == .done)
        }
    }

    @Test("A response whose range is in but whose seam is not ends after 300 ms without a byte, never while bytes come or while it waits for the rate limit")
    func quietSeamEnds() {
        var machine = twoSegments()
        machine.advance(0, by: 52)
        #expect(!machine.plan.hasAllItTakes(0))
        for tick in 10...12 { #expect(!ended(machine.tick(now: .milliseconds(100 * tick)), 0)) }
        #expect(ended(machine.tick(now: .milliseconds(1310)), 0))

        var flowing = twoSegments()
        flowing.advance(0, by: 50)
        for tick in 10...14 {
            #expect(!ended(flowing.tick(now: .milliseconds(100 * tick)), 0))
            flowing.advance(0, by: 1)
        }
        #expect(!ended(flowing.tick(now: .milliseconds(1500)), 0))

        var limited = twoSegments(rateLimited: true)
        limited.advance(0, by: 52)
        for tick in 10...30 { #expect(!ended(limited.tick(now: .milliseconds(100 * tick), waiting: [0]), 0)) }
        // Its turn came and it still sends nothing: the server is quiet.
        for tick in 31...32 { #expect(!ended(limited.tick(now: .milliseconds(100 * tick)), 0)) }
        #expect(ended(limited.tick(now: .milliseconds(3300)), 0))
    }
}
