import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

/// `Repr-Digest: sha-256=:BASE64:` of `content`.
/// Downloads `url` into `destination` through a task, so its results can be read.
private func fetch(_ url: URL, to destination: URL, session: DownloadSession) async throws -> DownloadTask {
    let task = session.downloadTask(with: URLRequest(url: url), to: destination)
    let events = task.events
    task.resume()
    for try await _ in events {}
    return task
}

extension Integration {
    @Suite("Metalink/HTTP: Link rel=duplicate mirrors and their validators")
    struct LinkMirrorTests {}
}

extension Integration.LinkMirrorTests {
    @Test("Link: rel=duplicate with an instance digest: mirrors with their own ETags serve, without If-Range")
    func duplicatesWithDigest() async throws {
        let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
        let content = GeneratedContent(size: 12 << 20, seed: 954)
        var primary = ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 4 << 20)
        primary.extraHeaders = [("Link", "<\(servers[1].url("/f").absoluteString)>; rel=duplicate; pri=1"),
                                ("Link", "<\(servers[2].url("/f").absoluteString)>; rel=duplicate; pri=2"), reprDigest(content)]
        servers[0].serve(primary, at: "/f")
        servers[1].serve(ServedFile(content: content, etag: "\"b\"", bytesPerSecond: 4 << 20), at: "/f")
        servers[2].serve(ServedFile(content: content, lastModified: "Mon, 02 Nov 2026 10:00:00 GMT", bytesPerSecond: 4 << 20),
                         at: "/f")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let task = try await fetch(servers[0].url("/f"), to: scratch.file("f"), session: testSession(connections: 6))
        #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
        #expect(task.checksumSource == .reprDigest)
        for server in servers.dropFirst() {
            #expect(server.bytesSent > 0)
            #expect(server.requests.allSatisfy { $0.ifRange == nil })
        }
        #expect(task.seamChecks.checked > 0 && task.seamChecks.mismatched == 0)
        for server in servers { await server.shutdown() }
    }

    @Test("Link: rel=duplicate with an instance digest: a mirror serving another file is caught at the seams")
    func duplicateOfAnotherFile() async throws {
        let servers = [try await TestServer.start(), try await TestServer.start()]
        let content = GeneratedContent(size: 8 << 20, seed: 955)
        var primary = ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 4 << 20)
        primary.extraHeaders = [("Link", "<\(servers[1].url("/f").absoluteString)>; rel=duplicate"), reprDigest(content)]
        servers[0].serve(primary, at: "/f")
        servers[1].serve(ServedFile(content: GeneratedContent(size: content.size, seed: 956), etag: "\"b\""), at: "/f")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let task = try await fetch(servers[0].url("/f"), to: scratch.file("f"), session: testSession(connections: 4))
        #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
        #expect(task.seamChecks.mismatched > 0)
        #expect(filesUnder(scratch.url) == ["f"])
        for server in servers { await server.shutdown() }
    }

    @Test("Link: rel=duplicate without an instance digest: mirrors are held to the first server's validators")
    func duplicatesWithoutDigest() async throws {
        let servers = [try await TestServer.start(), try await TestServer.start()]
        let content = GeneratedContent(size: 8 << 20, seed: 957)
        var primary = ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 4 << 20)
        primary.extraHeaders = [("Link", "<\(servers[1].url("/f").absoluteString)>; rel=duplicate")]
        servers[0].serve(primary, at: "/f")
        servers[1].serve(ServedFile(content: content, etag: "\"b\""), at: "/f")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let task = try await fetch(servers[0].url("/f"), to: scratch.file("f"), session: testSession(connections: 4))
        #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
        #expect(task.checksumSource == nil)
        // Asked with the first server's ETag, which it does not have: it answered the whole file
        // and was dropped; the first server served everything.
        #expect(!servers[1].requests.isEmpty)
        #expect(servers[1].requests.allSatisfy { $0.ifRange == "\"a\"" })
        #expect(servers[0].sentRanges().reduce(0) { $0 + $1.count } >= content.size)
        for server in servers { await server.shutdown() }
    }
}
