import Foundation
import Haul
import HaulTestServer
import Testing

@Suite("Segmented downloads against the test server")
struct SegmentedDownloadTests {
    @Test("64 MiB with 16 connections: exact bytes, 16 segments")
    func sixtyFourMegabytes() async throws {
        let file = ServedFile(content: GeneratedContent(size: 64 << 20, seed: 7), etag: "\"v1\"")
        let (server, _) = try await downloadAndVerify(file, session: testSession())
        let ranges = server.requests.compactMap(\.range)
        #expect(ranges.first == "bytes=0-")
        #expect(Set(ranges).count >= 16)
    }
}
