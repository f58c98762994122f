import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Mirrors with the same bytes under other validators")
    struct CLISameFileTests {
        @Test("A byte-identical mirror with another ETag is dropped for what really happened, and nothing restarts")
        func otherETag() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 111)
            server.serve(ServedFile(content: content, etag: "\"mtime-1\"", bytesPerSecond: 4 << 20), at: "/a.iso")
            server.serve(ServedFile(content: content, etag: "\"mtime-2\"", bytesPerSecond: 4 << 20), at: "/b.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/a.iso").absoluteString, server.url("/b.iso").absoluteString,
                                      "--same-file", "-o", scratch.file("f.iso").path, "-x", "4", "-v"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.iso").path) == content.sha256)
            #expect(!result.stderr.contains("answered HTTP 200 to a range request"), "stderr: \(result.stderr)")
            #expect(result.stderr.contains("ETag \"mtime-2\" is not the first source's \"mtime-1\""), "stderr: \(result.stderr)")
            #expect(!result.stderr.contains("restarting"), "stderr: \(result.stderr)")
            // Only the probe asked for byte 0 onwards of the first source.
            #expect(server.requests.filter { $0.path == "/a.iso" && $0.range == "bytes=0-" }.count == 1)
        }
    }
}
