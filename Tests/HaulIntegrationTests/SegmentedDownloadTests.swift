import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Segmented downloads: exact bytes")
    struct SegmentedDownloadTests {
        @Test("64 MiB with 16 connections: exact bytes, 16 segments, validated with If-Range")
        func sixtyFourMegabytes() async throws {
            let file = ServedFile(content: GeneratedContent(size: 64 << 20, seed: 7), etag: "\"v1\"")
            let (server, response) = try await downloadAndVerify(file, session: testSession())
            #expect(response.statusCode == 200, "the response describes the resource, not the range probe")
            let requests = server.requests
            #expect(requests.first?.range == "bytes=0-")
            #expect(Set(requests.compactMap(\.range)).count >= 16)
            #expect(requests.dropFirst().allSatisfy { $0.ifRange == "\"v1\"" })
        }

        static let boundarySizes: [Int64] = [
            0, 1, 2, 65_535, 65_536, 65_537, 131_071, 131_072, 131_073, 1_048_575, 1_048_576, 1_048_577, 1_114_117,
        ]

        @Test("Sizes around segment boundaries (64 KiB minimum split)", arguments: boundarySizes)
        func boundaries(size: Int64) async throws {
            let file = ServedFile(content: GeneratedContent(size: size, seed: UInt64(size) + 3))
            try await downloadAndVerify(file, session: testSession(minimumSplit: 65_536))
        }

        @Test("A slow first byte on every response does not break the split")
        func firstByteDelay() async throws {
            let file = ServedFile(content: GeneratedContent(size: 4 << 20, seed: 14), firstByteDelay: .milliseconds(200))
            let started = ContinuousClock.now
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 4))
            #expect(server.requests.count >= 4)
            // Headers come at once and the split starts then: the body delays overlap.
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(200) && elapsed < .seconds(5))
        }

        @Test("A server without range support: one stream, exact bytes")
        func noRanges() async throws {
            let file = ServedFile(content: GeneratedContent(size: 3 << 20, seed: 11), supportsRanges: false)
            let (server, response) = try await downloadAndVerify(file, session: testSession())
            #expect(response.statusCode == 200)
            #expect(server.requests.count == 1)
        }

        @Test("A server without Content-Length (chunked): stream to EOF, exact bytes")
        func noLength() async throws {
            let file = ServedFile(content: GeneratedContent(size: (2 << 20) + 77, seed: 12), supportsRanges: false,
                                  sendsLength: false)
            let (server, _) = try await downloadAndVerify(file, session: testSession())
            #expect(server.requests.count == 1)
        }

        @Test("A finished connection steals from slow ones: more requests than segments, exact bytes")
        func stealsFromSlowConnections() async throws {
            // Odd connections crawl at 256 KiB/s, even ones run at 8 MiB/s.
            let file = ServedFile(content: GeneratedContent(size: 8 << 20, seed: 13), etag: "\"s\"",
                                  bytesPerSecond: 8 << 20, oddConnectionBytesPerSecond: 256 << 10)
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 4, minimumSplit: 256 << 10))
            #expect(server.requests.count > 4, "no steal or endgame request was made")
        }
    }
}
