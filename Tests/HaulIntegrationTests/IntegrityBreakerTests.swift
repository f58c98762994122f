import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Integrity breaker")
    struct IntegrityBreakerTests {
        @Test("A suspend longer than the twin delay does not twin every paused segment on resume")
        func suspendDoesNotTwin() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            // 4 segments of 1 MiB at 256 KiB/s each: about four seconds undisturbed.
            let content = GeneratedContent(size: 4 << 20, seed: 7001)
            server.serve(ServedFile(content: content, etag: "\"p\"", bytesPerSecond: 256 << 10), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = testSession(connections: 16)
            defer { session.invalidateAndCancel() }
            let destination = scratch.file("out.bin")
            let task = session.downloadTask(with: URLRequest(url: server.url("/f")), to: destination)
            let events = task.events
            task.resume()
            try await Task.sleep(for: .milliseconds(600))
            task.suspend()
            // Longer than the two grace periods after which a silent segment gets a twin.
            try await Task.sleep(for: .milliseconds(3000))
            let before = server.requests.count
            task.resume()
            try await Task.sleep(for: .milliseconds(300))
            let after = server.requests.count
            // A paused segment is not stalled: resuming asks for nothing new (no segment of
            // ~0.8 MiB at 256 KiB/s can finish within 300 ms to make room for endgame twins).
            #expect(after == before, "resume started \(after - before) new requests: \(server.requests.suffix(after - before).map { $0.range ?? "-" })")
            for try await _ in events {}
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)
        }
    }
}
