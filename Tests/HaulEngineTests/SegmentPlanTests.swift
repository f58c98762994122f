@testable import Haul
import Testing

@Suite("SegmentPlan")
struct SegmentPlanTests {
    /// 100 bytes in two segments: the first is done, the second (50..<100) runs.
    private func secondHalfRunning() -> SegmentPlan {
        var plan = SegmentPlan(minimumSplit: 10)
        #expect(plan.split(length: 100, connections: 2) == [1])
        _ = plan.advance(0, by: 50)
        _ = plan.finish(0)
        return plan
    }

    @Test("Initial split: min(connections, length / minimum split) equal ranges", arguments: [
        (Int64(0), 16, Int64(1 << 20), [0..<0]),
        (1, 16, 1 << 20, [0..<1]),
        ((1 << 20) - 1, 16, 1 << 20, [0..<((1 << 20) - 1)]),
        (2 << 20, 16, 1 << 20, [0..<(1 << 20), (1 << 20)..<(2 << 20)]),
        (10, 4, 2, [0..<2, 2..<4, 4..<6, 6..<10]),
        (100, 3, 1, [0..<33, 33..<66, 66..<100]),
    ] as [(Int64, Int, Int64, [Range<Int64>])])
    func initialRanges(length: Int64, connections: Int, minimumSplit: Int64, expected: [Range<Int64>]) {
        #expect(SegmentPlan.initialRanges(length: length, connections: connections, minimumSplit: minimumSplit) == expected)
    }

    @Test("The window stops at the segment end; writes past it are refused")
    func windowStopsAtEnd() {
        var plan = SegmentPlan(minimumSplit: 10)
        _ = plan.split(length: 40, connections: 4)
        #expect(plan.step(for: 0, available: 100) == .write(offset: 0, count: 10))
        #expect(plan.advance(0, by: 6) == false)
        #expect(plan.step(for: 0, available: 100) == .write(offset: 6, count: 4))
        #expect(plan.advance(0, by: 4) == true)
        #expect(plan.step(for: 0, available: 100) == .stop)
    }

    @Test("Stealing takes the upper half of the largest remaining range")
    func steal() {
        var plan = secondHalfRunning()
        _ = plan.advance(1, by: 10)
        // Segment 1 has 40 left (60..<100): the thief takes 80..<100.
        let thief = plan.steal()
        #expect(thief == 2)
        #expect(plan.segments[1].end == 80)
        #expect(plan.segments[2].start == 80 && plan.segments[2].end == 100)
        #expect(plan.steal() == 1 ? false : true)
    }

    @Test("No steal below twice the minimum split; then an endgame twin")
    func endgame() {
        var plan = SegmentPlan(minimumSplit: 10)
        _ = plan.split(length: 38, connections: 2)
        _ = plan.advance(0, by: 19)
        _ = plan.finish(0)
        _ = plan.advance(1, by: 5)
        // 14 left < 20: no steal.
        #expect(plan.steal() == nil)
        let twin = plan.addTwin(minimumTail: 4)
        #expect(twin == 2)
        #expect(plan.segments[2].start == 24 && plan.segments[2].end == 38 && plan.segments[2].isTwin)
        // The twin finishes first: the original is done, and must be cancelled.
        _ = plan.advance(2, by: 14)
        #expect(plan.finish(2) == 1)
        #expect(plan.segments[1].state == .done)
        #expect(plan.isComplete)
        #expect(plan.doneRanges == [0..<38])
    }

    @Test("A range taken from a segment (a steal, an endgame steal, a twin, a replacement, a parked rest) keeps the sources that segment must not ask")
    func takenRangesAvoidTheSameSources() {
        var plan = secondHalfRunning()
        // Source 1 delivered a bad piece of segment 1.
        plan.avoid(1, sources: 1 << 1)
        let thief = plan.steal()
        #expect(thief == 2 && plan.segments[2].avoidSources == 1 << 1)
        let smaller = plan.steal(atLeast: 4)
        #expect(smaller == 3 && plan.segments[3].avoidSources == 1 << 1)
        let twin = plan.addTwin(minimumTail: 1)
        #expect(twin.map { plan.segments[$0].avoidSources } == 1 << 1)
        let replacement = plan.replace(1)
        #expect(plan.segments[replacement].avoidSources == 1 << 1)
        _ = plan.advance(replacement, by: 2)
        plan.park(replacement)
        #expect(plan.segments.last.map { $0.state == .pending && $0.avoidSources == 1 << 1 } == true)
        // A segment with nothing to avoid passes nothing on.
        #expect(plan.segments[0].avoidSources == 0)
    }

    @Test("The original finishing first cancels its twin")
    func originalWins() {
        var plan = SegmentPlan(minimumSplit: 10)
        _ = plan.split(length: 20, connections: 1)
        _ = plan.advance(0, by: 15)
        let twin = plan.addTwin(minimumTail: 1)!
        _ = plan.advance(twin, by: 2)
        _ = plan.advance(0, by: 5)
        #expect(plan.finish(0) == twin)
        #expect(plan.segments[twin].state == .cancelled)
        #expect(plan.isComplete)
    }

    @Test("Done ranges merge and count overlap once")
    func doneRanges() {
        var plan = SegmentPlan(minimumSplit: 1)
        _ = plan.split(length: 30, connections: 3)
        _ = plan.advance(0, by: 10)
        _ = plan.advance(1, by: 4)
        _ = plan.advance(2, by: 10)
        #expect(plan.doneRanges == [0..<14, 20..<30])
        #expect(plan.bytesDone == 24)
    }

    @Test("The written run from an offset (walked in place) agrees with the merged done ranges, chunks, twins and gaps included")
    func writtenEndAgreesWithDoneRanges() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var plan = SegmentPlan(minimumSplit: 4)
            plan.split(length: 400, firstChunk: 40)
            _ = plan.releaseTail(keeping: 40)
            var ids = [0]
            while let id = plan.takePending(chunk: Int64.random(in: 4...60, using: &generator)) { ids.append(id) }
            // Each segment writes some of its range; a few get an endgame twin that writes too.
            for id in ids.shuffled(using: &generator) {
                let segment = plan.segments[id]
                _ = plan.advance(id, by: Int.random(in: 0...Int(segment.end - segment.start), using: &generator))
                if Bool.random(using: &generator), plan.segments[id].remaining > 0, let twin = plan.addTwin(of: id) {
                    let twinSegment = plan.segments[twin]
                    _ = plan.advance(twin, by: Int.random(in: 0...Int(twinSegment.end - twinSegment.start), using: &generator))
                }
            }
            let done = plan.doneRanges
            for offset in Int64(0)...400 {
                let expected = done.first { $0.contains(offset) }?.upperBound ?? offset
                #expect(plan.writtenEnd(from: offset) == expected, "offset \(offset) in \(done)")
            }
            #expect(plan.isWrittenThrough == (done.first == 0..<400))
        }
    }
}

@Suite("SegmentPlan chunks")
struct SegmentPlanChunkTests {
    @Test("Connections take chunks of the lowest pending range, in file order; a small rest is not left behind")
    func chunksInOrder() {
        var plan = SegmentPlan(minimumSplit: 10)
        plan.split(length: 100, firstChunk: 100)
        #expect(plan.segments.count == 1 && plan.segments[0].end == 100)
        // A second connection is wanted: the probe keeps 20 bytes, the rest is pending.
        let released = plan.releaseTail(keeping: 20)
        #expect(released)
        #expect(plan.segments[0].end == 20)
        #expect(plan.pendingBytes == 80)
        let a = plan.takePending(chunk: 30)
        let b = plan.takePending(chunk: 30)
        #expect(a.map { plan.segments[$0].start..<plan.segments[$0].end } == 20..<50)
        #expect(b.map { plan.segments[$0].start..<plan.segments[$0].end } == 50..<80)
        // 20 left: less than a chunk plus the minimum split, so it is taken whole.
        let c = plan.takePending(chunk: 15)
        #expect(c.map { plan.segments[$0].start..<plan.segments[$0].end } == 80..<100)
        let none = plan.takePending(chunk: 15)
        #expect(none == nil)
    }

    @Test("With pieces, chunks are cut at piece boundaries")
    func alignedToPieces() {
        var plan = SegmentPlan(minimumSplit: 10)
        plan.alignment = 64
        plan.split(length: 1000, firstChunk: 1000)
        _ = plan.advance(0, by: 5)
        let released = plan.releaseTail(keeping: 100)
        #expect(released)
        #expect(plan.segments[0].end == 128)
        let next = plan.takePending(chunk: 100)
        #expect(next.map { plan.segments[$0].start..<plan.segments[$0].end } == 128..<256)
    }

    @Test("Parking a segment keeps what it wrote and hands the rest back as pending")
    func park() {
        var plan = SegmentPlan(minimumSplit: 10)
        plan.split(length: 100, firstChunk: 100)
        _ = plan.advance(0, by: 35)
        plan.park(0)
        #expect(plan.segments[0].state == .done && plan.segments[0].end == 35)
        #expect(plan.doneRanges == [0..<35])
        #expect(plan.pendingBytes == 65)
        #expect(plan.step(for: 0, available: 10) == .stop)
        let next = plan.takePending(chunk: 1000)
        #expect(next.map { plan.segments[$0].start } == 35)
    }
}
