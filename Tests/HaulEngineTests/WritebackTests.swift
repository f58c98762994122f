import Foundation
@testable import Haul
import Testing

@Suite("Writeback")
struct WritebackTests {
    @Test("Writeback starts in steps per segment, never twice for a byte, and starts over with a new epoch")
    func steps() throws {
        try withWriteback { writeback in
            func advance(_ segments: [(Int, Int64, Int64)], epoch: Int) -> [(Int64, Int64)] {
                writeback.advance(segments.map { (id: $0.0, start: $0.1, cursor: $0.2, end: Int64.max) }, epoch: epoch)
            }
            #expect(advance([(0, 0, 5), (1, 100, 100)], epoch: 0).isEmpty, "less than a step")
            #expect(advance([(0, 0, 12), (1, 100, 109)], epoch: 0).map { [$0.0, $0.1] } == [[0, 12]])
            #expect(advance([(0, 0, 20), (1, 100, 111)], epoch: 0).map { [$0.0, $0.1] } == [[100, 11]])
            #expect(advance([(0, 0, 25)], epoch: 0).map { [$0.0, $0.1] } == [[12, 13]])
            // A restart writes the file again from the start.
            #expect(advance([(0, 0, 10)], epoch: 1).map { [$0.0, $0.1] } == [[0, 10]])
        }
    }

    @Test("A complete segment shorter than a step has its writeback started once, whole")
    func completeSegments() throws {
        try withWriteback { writeback in
            func advance(_ segments: [(Int, Int64, Int64, Int64)]) -> [[Int64]] {
                writeback.advance(segments.map { (id: $0.0, start: $0.1, cursor: $0.2, end: $0.3) }, epoch: 0).map { [$0.0, $0.1] }
            }
            // Chunks of 4 bytes: none reaches a step, each is started once it is complete.
            #expect(advance([(0, 0, 4, 4), (1, 4, 6, 8), (2, 8, 8, 12)]) == [[0, 4]])
            #expect(advance([(0, 0, 4, 4), (1, 4, 8, 8), (2, 8, 9, 12)]) == [[4, 4]])
            // A segment started in steps has only its rest started when it completes.
            #expect(advance([(3, 12, 24, 27)]) == [[12, 12]])
            #expect(advance([(3, 12, 27, 27)]) == [[24, 3]])
            #expect(advance([(0, 0, 4, 4), (3, 12, 27, 27)]).isEmpty, "never twice for a byte")
        }
    }

    /// A `Writeback` with a step of 10 bytes on a scratch file of its own.
    private func withWriteback(_ body: (Writeback) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("haul-writeback-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 64)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDWR)
        #expect(fd >= 0)
        let writeback = Writeback(descriptor: fd, step: 10)
        defer { writeback.close() }
        try body(writeback)
    }
}
