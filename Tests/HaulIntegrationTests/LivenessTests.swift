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
                // Two seconds' worth at the limit. A transfer left paused would hang far longer, and
                // one that curl left neither paused nor watched (its range done while it waited
                // for the limit) held the download until the next try of more connections, 5 s.
                #expect(elapsed >= .milliseconds(1500) && elapsed < .seconds(5), "round \(round) took \(elapsed)")
            }
        }

        @Test("A rate-limited download keeps moving after its connections are shed: the probe's open-ended response, refused past its range while it waited for the limit, ends at once")
        func rateLimitAfterShedding() async throws {
            var configuration = DownloadSession.Configuration()
            configuration.maximumBytesPerSecond = 5 << 20
            configuration.syncsBeforeMove = false
            let file = ServedFile(content: GeneratedContent(size: 20 << 20, seed: 305), etag: "\"s\"")
            let started = ContinuousClock.now
            try await downloadAndVerify(file, session: DownloadSession(configuration: configuration))
            let elapsed = ContinuousClock.now - started
            // Four seconds' worth at the limit; the probe left neither paused nor watched held
            // the download until the next try of more connections (about nine seconds in all).
            #expect(elapsed >= .seconds(3) && elapsed < .seconds(7), "took \(elapsed)")
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
