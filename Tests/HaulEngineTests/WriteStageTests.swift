@testable import Haul
import Testing

@Suite("Write stage")
struct WriteStageTests {
    private func bytes(_ count: Int, from first: Int = 0) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: first + $0) }
    }

    @Test("A run that starts at an odd offset is cut at the next 32 KiB boundary, later runs at every boundary")
    func runsEndOnBoundaries() {
        let stage = WriteStage(owner: ObjectIdentifier(WriteStageTests.self), segment: 3, source: 1)
        let capacity = WriteStage.capacity
        // 14 571 body bytes came with the head: the first run ends at the boundary after them.
        stage.begin(at: 14_571)
        let piece = bytes(16_384)
        let first = piece.withUnsafeBytes { stage.hold($0) }
        #expect(first == 16_384 && !stage.isFull)
        let second = piece.withUnsafeBytes { stage.hold($0) }
        #expect(second == capacity - 14_571 - 16_384 && stage.isFull)
        #expect(stage.count == capacity - 14_571)
        #expect(Array(stage.bytes.prefix(16_384)) == piece)
        stage.clear()
        #expect(stage.isEmpty && !stage.isFull)
        // The next run starts on the boundary and holds a whole block.
        stage.begin(at: Int64(capacity))
        var held = 0
        while !stage.isFull { held += piece.withUnsafeBytes { stage.hold($0) } }
        #expect(held == capacity && stage.count == capacity)
        // Nothing more fits until the run is handed on.
        #expect(piece.withUnsafeBytes { stage.hold($0) } == 0)
        stage.release()
        #expect(stage.isEmpty)
        // After release the buffer is made again on demand.
        stage.begin(at: 0)
        #expect(piece.withUnsafeBytes { stage.hold($0) } == 16_384)
        #expect(Array(stage.bytes) == piece)
        #expect(stage.segment == 3 && stage.source == 1)
    }

    @Test("Runs are cut at boundaries of the file, not of the response, wherever they start", arguments: [0, 1, 4095, 32_767, 32_768, 1 << 40])
    func boundaryFromAnyOffset(offset: Int64) {
        let stage = WriteStage(owner: ObjectIdentifier(WriteStageTests.self), segment: 0, source: 0)
        stage.begin(at: offset)
        let piece = bytes(7_000)
        while !stage.isFull { _ = piece.withUnsafeBytes { stage.hold($0) } }
        #expect((offset + Int64(stage.count)) % Int64(WriteStage.capacity) == 0)
        #expect(stage.count > 0 && stage.count <= WriteStage.capacity)
    }
}
