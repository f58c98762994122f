import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Mirrors with the same bytes under other validators")
    struct CLISameFileTests {
        @Test("--mirror: a byte-identical mirror with another ETag is dropped for what really happened, and nothing restarts")
        func otherETagDropped() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 111)
            server.serve(ServedFile(content: content, etag: "\"mtime-1\"", bytesPerSecond: 4 << 20), at: "/a.iso")
            server.serve(ServedFile(content: content, etag: "\"mtime-2\"", bytesPerSecond: 4 << 20), at: "/b.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/a.iso").absoluteString, "--mirror", server.url("/b.iso").absoluteString,
                                      "-o", scratch.file("f.iso").path, "-x", "4", "-v"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.iso").path) == content.sha256)
            #expect(!result.stderr.contains("answered HTTP 200 to a range request"), "stderr: \(result.stderr)")
            #expect(result.stderr.contains("ETag \"mtime-2\" is not the first source's \"mtime-1\""), "stderr: \(result.stderr)")
            #expect(!result.stderr.contains("restarting"), "stderr: \(result.stderr)")
            #expect(server.requests.filter { $0.path == "/a.iso" && $0.range == "bytes=0-" }.count == 1)
        }

        @Test("--mirror without validators on either side: not used, with advice; with --checksum it serves")
        func noValidatorsNeedsChecksum() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 115)
            server.serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/a.iso")
            server.serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/b.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let urls = [server.url("/a.iso").absoluteString, "--mirror", server.url("/b.iso").absoluteString]
            let plain = try runHaul(["get"] + urls + ["-o", scratch.file("a.iso").path, "-x", "4"])
            #expect(plain.status == 0, "stderr: \(plain.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("a.iso").path) == content.sha256)
            #expect(plain.stderr.contains("dropping a source") && plain.stderr.contains("give the file's SHA-256 (haul get --checksum)"),
                    "stderr: \(plain.stderr)")
            let mirrorRequests = server.requests.filter { $0.path == "/b.iso" }.count
            let checked = try runHaul(["get"] + urls + ["-o", scratch.file("b.iso").path, "-x", "4",
                                                        "--checksum", "sha-256=\(content.sha256)"])
            #expect(checked.status == 0, "stderr: \(checked.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("b.iso").path) == content.sha256)
            #expect(!checked.stderr.contains("dropping a source"), "stderr: \(checked.stderr)")
            #expect(server.requests.filter { $0.path == "/b.iso" }.count > mirrorRequests + 1)
        }

        @Test("--same-file: a byte-identical mirror with another ETag is used, without If-Range, its seams checked")
        func otherETagUsed() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 112)
            server.serve(ServedFile(content: content, etag: "\"mtime-1\"", bytesPerSecond: 2 << 20), at: "/a.iso")
            server.serve(ServedFile(content: content, etag: "\"mtime-2\"", bytesPerSecond: 2 << 20), at: "/b.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/a.iso").absoluteString, server.url("/b.iso").absoluteString,
                                      "--same-file", "-o", scratch.file("f.iso").path, "-x", "4", "-v"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.iso").path) == content.sha256)
            #expect(!result.stderr.contains("dropping a source") && !result.stderr.contains("restarting"), "stderr: \(result.stderr)")
            let mirrorRequests = server.requests.filter { $0.path == "/b.iso" }
            #expect(!mirrorRequests.isEmpty && mirrorRequests.allSatisfy { $0.ifRange == nil })
        }

        @Test("--same-file with a mirror that serves other bytes: never a spliced file")
        func otherBytesNeverSpliced() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 113)
            let other = GeneratedContent(size: 8 << 20, seed: 114)
            server.serve(ServedFile(content: content, etag: "\"1\"", bytesPerSecond: 2 << 20), at: "/a.iso")
            server.serve(ServedFile(content: other, etag: "\"2\"", bytesPerSecond: 2 << 20), at: "/b.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("f.iso").path
            let result = try runHaul(["get", server.url("/a.iso").absoluteString, server.url("/b.iso").absoluteString,
                                      "--same-file", "-o", output, "-x", "4"])
            if result.status == 0 {
                #expect(try SHA256.hex(ofFileAt: output) == content.sha256, "a spliced file was saved")
            } else {
                #expect(!FileManager.default.fileExists(atPath: output))
            }
        }
    }
}
