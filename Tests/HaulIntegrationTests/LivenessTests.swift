import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Liveness: rate limits, sources that fail")
    struct LivenessTests {
        @Test("A rate-limited download finishes at the limit, every run", arguments: [(2, Int64(2 << 20)), (16, 4 << 20)])
        func rateLimitFinishes(connections: Int, rate: Int64) async throws {
            for round in 0..<3 {
                var configuration = DownloadSession.Configuration()
                configuration.connectionsPerDownload = connections
                configuration.maximumBytesPerSecond = rate
                configuration.syncsBeforeMove = false
                let file = ServedFile(content: GeneratedContent(size: 2 * rate, seed: 300 + UInt64(round)), etag: "\"l\"")
                let started = ContinuousClock.now
                try await downloadAndVerify(file, session: DownloadSession(configuration: configuration))
                let elapsed = ContinuousClock.now - started
                // Two seconds' worth at the limit; a transfer left paused would hang far longer.
                #expect(elapsed >= .milliseconds(1500) && elapsed < .seconds(10), "round \(round) took \(elapsed)")
            }
        }

        @Test("A mirror that answers 404 is dropped; the download finishes from the URL")
        func mirrorNotFound() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 310)
            server.serve(ServedFile(content: content, etag: "\"m\""), at: "/good")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            let task = testSession(connections: 8).downloadTask(with: URLRequest(url: server.url("/good")), to: destination)
            task.mirrors = [server.url("/missing")]
            let events = task.events
            task.resume()
            for try await _ in events {}
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)
            #expect(server.requests.contains { $0.path == "/missing" }, "the mirror was never tried")
        }
    }
}
