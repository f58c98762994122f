import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
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

        @Test("A suspended download is idle: the transfer loop does no work while its transfers are paused, and the bytes are exact after resuming")
        func suspendedIsIdle() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 306)
            server.serve(ServedFile(content: content, etag: "\"p\"", bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = testSession(connections: 4)
            let task = session.downloadTask(with: URLRequest(url: server.url("/f")), to: scratch.file("f"))
            let events = task.events
            task.resume()
            try await Task.sleep(for: .milliseconds(500))
            task.suspend()
            // The server keeps sending until the sockets' buffers are full: data waits unread.
            try await Task.sleep(for: .milliseconds(300))
            let before = session.multi.queue.sync { session.multi.busy }
            try await Task.sleep(for: .seconds(1))
            let after = session.multi.queue.sync { session.multi.busy }
            #expect(after - before < .milliseconds(100), "the transfer loop worked \(after - before) in a second of suspension")
            task.resume()
            do { for try await _ in events {} } catch {}
            #expect(task.error == nil)
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
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
