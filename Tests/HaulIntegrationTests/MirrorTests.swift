import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Testing

private func session(connections: Int = 8, perHost: Int = 0) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.minimumSplitSize = 512 << 10
    configuration.connectionsPerHost = perHost
    configuration.syncsBeforeMove = false
    configuration.slowConnectionGracePeriod = 1
    return DownloadSession(configuration: configuration)
}

/// Downloads `content` from the first server with the others as mirrors; checks the bytes.
private func downloadFromMirrors(_ servers: [TestServer], content: GeneratedContent,
                                 connections: Int = 8) async throws -> DownloadTask {
    let scratch = Scratch()
    defer { scratch.cleanup() }
    let task = session(connections: connections).downloadTask(with: URLRequest(url: servers[0].url("/f")),
                                                              to: scratch.file("out"))
    task.mirrors = servers.dropFirst().map { $0.url("/f") }
    let events = task.events
    task.resume()
    for try await _ in events {}
    #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == content.sha256)
    return task
}

extension Integration {
    @Suite("Mirrors")
    struct MirrorTests {
        @Test("Two mirrors at different speeds: exact bytes, and the faster one served most")
        func twoMirrors() async throws {
            let slow = try await TestServer.start()
            let fast = try await TestServer.start()
            let content = GeneratedContent(size: 24 << 20, seed: 111)
            slow.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: 1 << 20), at: "/f")
            fast.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: 6 << 20), at: "/f")
            _ = try await downloadFromMirrors([slow, fast], content: content)
            #expect(fast.bytesSent > 2 * slow.bytesSent, "fast \(fast.bytesSent), slow \(slow.bytesSent)")
            await slow.shutdown()
            await fast.shutdown()
        }

        @Test("Three mirrors with known rates: exact bytes, most from the fastest")
        func threeMirrors() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 24 << 20, seed: 112)
            for (server, rate) in zip(servers, [1 << 20, 2 << 20, 8 << 20]) {
                server.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: rate), at: "/f")
            }
            _ = try await downloadFromMirrors(servers, content: content, connections: 9)
            #expect(servers[2].bytesSent > servers[0].bytesSent)
            #expect(servers[2].bytesSent > servers[1].bytesSent)
            for server in servers { await server.shutdown() }
        }

        @Test("A mirror that dies mid-way is dropped; the download finishes from the other")
        func mirrorDies() async throws {
            let good = try await TestServer.start()
            let dying = try await TestServer.start()
            let content = GeneratedContent(size: 16 << 20, seed: 113)
            good.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: 4 << 20), at: "/f")
            dying.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: 4 << 20,
                                   faults: [Fault(.resetAfter(bytes: 300_000), times: 1_000)]), at: "/f")
            _ = try await downloadFromMirrors([good, dying], content: content)
            await good.shutdown()
            await dying.shutdown()
        }

        @Test("A mirror serving a different file is detected and dropped; the bytes are exact")
        func mirrorWithOtherFile() async throws {
            let good = try await TestServer.start()
            let other = try await TestServer.start()
            let content = GeneratedContent(size: 16 << 20, seed: 114)
            good.serve(ServedFile(content: content, etag: "\"right\"", bytesPerSecond: 4 << 20), at: "/f")
            other.serve(ServedFile(content: GeneratedContent(size: 16 << 20, seed: 999), etag: "\"wrong\""), at: "/f")
            _ = try await downloadFromMirrors([good, other], content: content)
            // It gets its share of the first split (half of 8 segments, sent before any answer),
            // then nothing more.
            #expect(other.requests.count <= 4)
            await good.shutdown()
            await other.shutdown()
        }

        @Test("Connections per host are bounded across downloads")
        func perHostBound() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            // Single-segment files (768 KiB, under twice the 512 KiB minimum split): no response is cut short, so
            // no connection closes early and the server's count of open connections is exact.
            let contents = (0..<6).map { GeneratedContent(size: 768 << 10, seed: 120 + UInt64($0)) }
            for (index, content) in contents.enumerated() {
                server.serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/\(index)")
            }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let shared = session(connections: 8, perHost: 3)
            let started = ContinuousClock.now
            try await downloadConcurrently(contents, from: server, session: shared, into: scratch)
            #expect(server.peakOpenConnections <= 3, "peak \(server.peakOpenConnections) connections")
            // Six downloads of 0.375 s each, three at a time: they waited for each other.
            #expect(ContinuousClock.now - started >= .milliseconds(700))
        }

        @Test("Slow connections are replaced: the tail does not crawl")
        func slowConnectionsReplaced() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 24 << 20, seed: 115)
            // Odd-numbered connections crawl at 128 KiB/s, the others run at 4 MiB/s.
            server.serve(ServedFile(content: content, etag: "\"s\"", bytesPerSecond: 4 << 20,
                                    oddConnectionBytesPerSecond: 128 << 10), at: "/f")
            let started = ContinuousClock.now
            _ = try await downloadFromMirrors([server], content: content)
            // Without replacement or stealing, a slow connection's 3 MiB share takes 24 s.
            #expect(ContinuousClock.now - started < .seconds(12))
        }
    }
}
