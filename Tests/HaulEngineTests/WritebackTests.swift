import Foundation
@testable import Haul
import Testing

@Suite("Writeback")
struct WritebackTests {
    @Test("Writeback starts in steps per segment, never twice for a byte, and starts over with a new epoch")
    func steps() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("haul-writeback-\(UUID().uuidString)").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(count: 64)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDWR)
        #expect(fd >= 0)
        let writeback = Writeback(descriptor: fd, step: 10)
        defer { writeback.close() }
        func advance(_ segments: [(Int, Int64, Int64)], epoch: Int) -> [(Int64, Int64)] {
            writeback.advance(segments.map { (id: $0.0, start: $0.1, cursor: $0.2) }, epoch: epoch)
        }
        #expect(advance([(0, 0, 5), (1, 100, 100)], epoch: 0).isEmpty, "less than a step")
        #expect(advance([(0, 0, 12), (1, 100, 109)], epoch: 0).map { [$0.0, $0.1] } == [[0, 12]])
        #expect(advance([(0, 0, 20), (1, 100, 111)], epoch: 0).map { [$0.0, $0.1] } == [[100, 11]])
        #expect(advance([(0, 0, 25)], epoch: 0).map { [$0.0, $0.1] } == [[12, 13]])
        // A restart writes the file again from the start.
        #expect(advance([(0, 0, 10)], epoch: 1).map { [$0.0, $0.1] } == [[0, 10]])
    }
}
