@testable import Haul
import Testing

private func head(_ status: Int, range: String? = nil, etag: String? = nil) -> ResponseHead {
    var fields: [(name: String, value: String)] = []
    if let range { fields.append(("Content-Range", range)) }
    if let etag { fields.append(("ETag", etag)) }
    return ResponseHead(status: status, fields: fields)
}

private func starts(_ actions: [DownloadStateMachine.Action]) -> [DownloadStateMachine.Request] {
    actions.compactMap { if case .start(let request) = $0 { request } else { nil } }
}

@Suite("A metalink the server names (rel=describedby)")
struct DescriptionTests {
    @Test("The split waits for the metalink; its sources join with their own validators; then the probe's rest is split")
    func splitWaits() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 10))
        _ = machine.start()
        machine.awaitDescription()
        #expect(machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0) == [.preallocate(length: 100)])
        for _ in 0..<10 {
            guard case .write = machine.step(for: 0, available: 1) else { Issue.record("the probe stopped"); return }
            machine.advance(0, by: 1)
        }
        // The metalink's hash checks the whole file (the transfer layer says so as it adopts it).
        machine.checksumKnown = true
        let started = starts(machine.described(newSources: 1, pieces: nil))
        // What the probe has left (90 bytes) in four: the probe keeps the first, three start.
        #expect(started.map(\.from) == [32, 54, 76])
        #expect(started.map(\.mirror) == [1, 0, 1])
        // The metalink's source has validators of its own: no If-Range, and another ETag is fine.
        #expect(started.filter { $0.mirror == 1 }.allSatisfy { $0.ifRange == nil })
        #expect(started.filter { $0.mirror == 0 }.allSatisfy { $0.ifRange == "\"a\"" })
        #expect(machine.received(head(206, range: "bytes 32-53/100", etag: "\"b\""), for: started[0].segment) == [])
        #expect(machine.plan.segments[0].end == 32)
    }

    @Test("Nothing finishes while the metalink is awaited; its pieces are then checked before the finish")
    func finishWaits() {
        var machine = DownloadStateMachine(options: .init(connections: 4, minimumSplit: 10))
        _ = machine.start()
        machine.awaitDescription()
        _ = machine.received(head(206, range: "bytes 0-99/100", etag: "\"a\""), for: 0)
        guard case .write(_, let count) = machine.step(for: 0, available: 100) else { Issue.record("no write"); return }
        #expect(count == 100)
        machine.advance(0, by: 100)
        #expect(machine.transferEnded(0, .completed) == [])
        #expect(!machine.isFinished)
        #expect(machine.described(newSources: 0, pieces: PieceLedger(pieceLength: 50, length: 100)) == [])
        #expect(machine.piecesReady() == [0, 1])
        #expect(machine.piecePassed(0) == [])
        #expect(machine.piecePassed(1) == [.finish(length: 100)])
    }

    @Test("Without pieces the finish follows the metalink at once; a restart stops waiting for it")
    func finishAfterDescription() {
        var machine = DownloadStateMachine(options: .init(connections: 1, minimumSplit: 10))
        _ = machine.start()
        machine.awaitDescription()
        _ = machine.received(head(206, range: "bytes 0-9/10", etag: "\"a\""), for: 0)
        machine.advance(0, by: 10)
        #expect(machine.transferEnded(0, .completed) == [])
        #expect(machine.described(newSources: 2, pieces: nil) == [.finish(length: 10)])
        #expect(machine.mirrors.mirrors.count == 3)

        var other = DownloadStateMachine(options: .init(connections: 1, minimumSplit: 10))
        _ = other.start()
        other.awaitDescription()
        _ = other.restart(reason: "changed")
        #expect(!other.awaitingDescription)
    }
}
