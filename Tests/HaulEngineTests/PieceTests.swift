@testable import Haul
import Testing

@Suite("Piece verification planning")
struct PieceTests {
    @Test("The ledger: pieces become ready when all their bytes are done; a failure blames its writers")
    func ledger() {
        var ledger = PieceLedger(pieceLength: 100, length: 350)
        #expect(ledger.count == 4)
        #expect(ledger.range(of: 3) == 300..<350)
        ledger.wrote(offset: 0, count: 150, source: 0)
        ledger.wrote(offset: 150, count: 200, source: 2)
        #expect(ledger.takeReady(done: [0..<150]) == [0])
        #expect(ledger.takeReady(done: [0..<350]) == [1, 2, 3])
        #expect(ledger.takeReady(done: [0..<350]).isEmpty)
        ledger.passed(0)
        #expect(ledger.verifiedPrefix == 100)
        let first = ledger.failed(1)
        #expect(first.blamed == [0, 2] && first.toDrop.isEmpty)
        let second = ledger.failed(2)
        #expect(second.blamed == [2] && second.toDrop == [2])
        ledger.passed(3)
        #expect(!ledger.allVerified)
        #expect(ledger.verifiedPrefix == 100)
        // A stale result for a piece not being hashed is ignored.
        ledger.passed(1)
        #expect(ledger.verified == [0, 3])
    }

    @Test("Pieces verified before (resume) are not handed out again")
    func resumed() {
        var ledger = PieceLedger(pieceLength: 100, length: 400, verified: [0, 1, 3])
        #expect(ledger.verifiedPrefix == 200)
        #expect(ledger.takeReady(done: [0..<400]) == [2])
        ledger.passed(2)
        #expect(ledger.allVerified && ledger.verifiedPrefix == 400)
    }

    @Test("Invalidating a range inside a done segment leaves the bytes around it done")
    func invalidateDone() {
        var plan = SegmentPlan(resuming: 1000, done: [0..<1000], minimumSplit: 10)
        let id = plan.invalidate(200..<300)
        #expect(plan.doneRanges == [0..<200, 300..<1000])
        #expect(plan.segments[id].state == .pending)
        #expect(plan.segments[id].start == 200 && plan.segments[id].end == 300)
        #expect(!plan.isComplete)
    }

    @Test("Invalidating a range in a running segment's done prefix keeps it running after the range")
    func invalidateRunning() {
        var plan = SegmentPlan(minimumSplit: 10)
        _ = plan.split(length: 1000, connections: 1)
        plan.unblock(0)
        plan.beginRequest(0, from: 0, requestEnd: 1000)
        plan.unblock(0)
        plan.advance(0, by: 800)
        let id = plan.invalidate(200..<300)
        #expect(plan.doneRanges == [0..<200, 300..<800])
        #expect(plan.segments[0].state == .active && plan.segments[0].cursor == 800 && plan.segments[0].end == 1000)
        #expect(plan.segments[id].start == 200 && plan.segments[id].end == 300)
    }

    @Test("The machine: a bad piece is fetched again from another source; a source with two bad pieces is dropped")
    func machine() {
        var options = DownloadStateMachine.Options(connections: 1, minimumSplit: 100, mirrors: 3)
        options.identifiedByHashes = true
        var machine = DownloadStateMachine(options: options, resume: .init(length: 400, etag: "\"e\"", done: [0..<400]))
        machine.pieces = PieceLedger(pieceLength: 100, length: 400)
        machine.pieces?.wrote(offset: 0, count: 400, source: 1)
        // Every byte is on disk, but nothing is verified: it does not finish yet.
        #expect(machine.start().isEmpty)
        #expect(machine.piecesReady() == [0, 1, 2, 3])
        #expect(machine.piecePassed(0).isEmpty)
        let first = machine.pieceFailed(1)
        #expect(first.first == .badPiece(index: 1, offset: 100, sources: [1]))
        guard case .start(let request)? = first.last else {
            Issue.record("no request: \(first)")
            return
        }
        #expect(request.kind == .range && request.from == 100 && request.through == 199)
        #expect(request.mirror != 1)
        let second = machine.pieceFailed(2)
        #expect(second.contains(.droppedMirror(index: 1, reason: "it delivered 2 bad pieces")))
        #expect(!machine.mirrors.mirrors[1].enabled)
        #expect(machine.piecePassed(3).isEmpty)
        #expect(!machine.isFinished)
    }

    @Test("A piece that keeps failing ends the download with a clear error")
    func keepsFailing() {
        var machine = DownloadStateMachine(options: .init(connections: 1, minimumSplit: 100, mirrors: 2),
                                           resume: .init(length: 200, etag: "\"e\"", done: [0..<200]))
        machine.pieces = PieceLedger(pieceLength: 100, length: 200)
        _ = machine.start()
        var last: [DownloadStateMachine.Action] = []
        for _ in 0..<DownloadStateMachine.maxPieceFailures {
            _ = machine.piecesReady()
            // The re-fetch "lands": the range is done again.
            for segment in machine.plan.segments where segment.state == .active {
                machine.plan.beginRequest(segment.id, from: segment.cursor, requestEnd: segment.end)
                machine.plan.unblock(segment.id)
                machine.plan.advance(segment.id, by: Int(segment.end - segment.cursor))
            }
            _ = machine.piecesReady()
            last = machine.pieceFailed(0)
        }
        guard case .fail(.badPiece(index: 0, offset: 0, _))? = last.last else {
            Issue.record("\(last)")
            return
        }
        #expect(machine.isFinished)
    }
}
