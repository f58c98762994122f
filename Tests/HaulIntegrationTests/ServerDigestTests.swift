import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

private func session(hashing: Bool = true, connections: Int = 4) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.syncsBeforeMove = false
    configuration.computesSHA256 = hashing
    return DownloadSession(configuration: configuration)
}

/// Runs `task` to its end and returns its error, if any.
private func finish(_ task: DownloadTask) async -> Error? {
    let events = task.events
    task.resume()
    do {
        for try await _ in events {}
        return nil
    } catch {
        return error
    }
}

extension Integration {
    @Suite("The server's instance digest")
    struct ServerDigestTests {
        @Test("With SHA-256 off, a digest the server sends is still checked: a file that does not match fails")
        func checkedWithHashingOff() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 7301)
            var file = ServedFile(content: content)
            file.extraHeaders = [reprDigest(GeneratedContent(size: content.size, seed: 7302))]
            server.serve(file, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let task = session(hashing: false).downloadTask(with: URLRequest(url: server.url("/f")), to: scratch.file("f"))
            let error = await finish(task)
            guard case .checksumMismatch? = error as? HaulError else {
                Issue.record("expected a checksum mismatch, got \(String(describing: error))")
                return
            }
            #expect(!FileManager.default.fileExists(atPath: scratch.file("f").path))
        }

        @Test("A resumed download is held to the digest the server sent, even when the server stops sending it")
        func resumeKeepsServerDigest() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 7303)
            var file = ServedFile(content: content, etag: "\"d\"", bytesPerSecond: 2 << 20)
            file.extraHeaders = [reprDigest(content)]
            server.serve(file, at: "/f")
            // One connection: the bytes done are a prefix, far from the change below.
            let first = session(connections: 1).downloadTask(with: URLRequest(url: server.url("/f")))
            first.resume()
            try await Task.sleep(for: .milliseconds(500))
            let blob = try #require(await first.cancelByProducingResumeData())
            let resume = try ResumeData(blob)
            #expect(resume.serverSHA256 == content.sha256 && resume.serverDigestHeader == .reprDigest)
            #expect(resume.expectedSHA256 == nil)
            #expect(resume.bytesDone < 4 << 20)
            // The server now serves other bytes under the same ETag, and no digest: what a mirror
            // admitted on that digest may have left in the partial file.
            let other = GeneratedContent(size: content.size, seed: 7303,
                                         patches: [.init(from: 6 << 20, to: (6 << 20) + 4096, seed: 9)])
            server.serve(ServedFile(content: other, etag: "\"d\"", bytesPerSecond: 8 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let task = session().downloadTask(withResumeData: blob)
            let error = await finish(task)
            guard case .checksumMismatch? = error as? HaulError else {
                Issue.record("expected a checksum mismatch, got \(String(describing: error))")
                return
            }
        }

        @Test("haul get --mirror naming the URL itself is one source: nothing is dropped")
        func mirrorIsTheURL() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 7305)
            server.serve(ServedFile(content: content, bytesPerSecond: 4 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/f").absoluteString
            let result = try runHaul(["get", url, "--mirror", url, "-o", scratch.file("f").path, "-x", "4"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            #expect(!result.stderr.contains("dropping a source"), "stderr: \(result.stderr)")
        }

        @Test("haul get --checksum with a mirror serving another version: exit 3, and the mirrors are named as the likely cause")
        func mismatchNamesMirrors() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 8 << 20, seed: 7306)
            // Differs in the middle of every MiB: any range the mirror serves carries a change.
            let patches = (0..<8).map { GeneratedContent.Patch(from: Int64($0) << 20 + (1 << 19), to: Int64($0) << 20 + (1 << 19) + 4096, seed: 9) }
            servers[0].serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/f")
            servers[1].serve(ServedFile(content: GeneratedContent(size: content.size, seed: 7306, patches: patches),
                                        bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", servers[0].url("/f").absoluteString, "--mirror", servers[1].url("/f").absoluteString,
                                      "--checksum", "sha-256=\(content.sha256)", "-o", scratch.file("f").path, "-x", "4"])
            if result.status == 0 {
                #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            } else {
                #expect(result.status == 3, "stderr: \(result.stderr)")
                #expect(result.stderr.contains("download it again without them") && result.stderr.contains(servers[1].url("/f").absoluteString),
                        "stderr: \(result.stderr)")
                #expect(!FileManager.default.fileExists(atPath: scratch.file("f").path))
            }
            #expect(servers[1].bytesSent > 0, "the mirror was not used")
            for server in servers { await server.shutdown() }
        }
    }
}
