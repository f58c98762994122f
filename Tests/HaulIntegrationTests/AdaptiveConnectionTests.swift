import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    /// The measured connection count against real (loopback) servers: exact bytes every time.
    @Suite("Adaptive connection count")
    struct AdaptiveConnectionTests {
        @Test("A server that limits each response's speed: the download opens more connections and finishes far sooner than one could")
        func perConnectionLimit() async throws {
            // 4 MiB/s per response: one connection would need 6 s for 24 MiB.
            let content = GeneratedContent(size: 24 << 20, seed: 4242)
            let file = ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 4 << 20)
            let started = ContinuousClock.now
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 8, adaptive: true))
            let elapsed = ContinuousClock.now - started
            let connections = Set(server.requests.map(\.connection)).count
            #expect(connections >= 4, "\(connections) connections")
            #expect(elapsed < .seconds(4), "\(elapsed)")
        }

        @Test("A ceiling of one connection never splits: one request for the whole file")
        func ceilingOfOne() async throws {
            let file = ServedFile(content: GeneratedContent(size: 6 << 20, seed: 4243), bytesPerSecond: 16 << 20)
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 1, adaptive: true))
            #expect(server.requests.count == 1)
            #expect(server.requests.first?.range == "bytes=0-")
        }

        @Test("haul get --fixed -x 3 opens exactly three connections; the default measures")
        func fixedFlag() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 12 << 20, seed: 4244)
            server.serve(ServedFile(content: content, bytesPerSecond: 32 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/f").absoluteString, "-o", scratch.file("f").path, "-x", "3", "--fixed", "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            #expect(Set(server.requests.map(\.connection)).count >= 3)
            let help = try runHaul(["get", "--help"])
            #expect(help.stdout.contains("--fixed"))
        }
    }
}
