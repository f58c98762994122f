import Foundation
@testable import Haul
import HaulDaemon
import HaulTestServer
import Testing

extension Integration {
    @Suite("Daemon: aria2.addMetalink")
    struct DaemonMetalinkTests {
        @Test("addMetalink queues each file from its mirrors, checked against its SHA-256; returns the GIDs")
        func addMetalink() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let first = GeneratedContent(size: 3 << 20, seed: 961)
            let second = GeneratedContent(size: 100_000, seed: 962)
            for server in servers {
                server.serve(ServedFile(content: first, etag: "\"a\""), at: "/a")
                server.serve(ServedFile(content: second, etag: "\"b\""), at: "/b")
            }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let a = try metalinkFor(first, name: "a.bin", urls: servers.map { $0.url("/a") })
            let b = try metalinkFor(second, name: "b.bin", urls: servers.map { $0.url("/b") })
            let both = try Metalink(files: a.files + b.files)
            let gids = try #require(try await rpc.call("aria2.addMetalink", [both.xmlData().base64EncodedString()]) as? [String])
            #expect(gids.count == 2)
            for (gid, (name, content)) in zip(gids, [("a.bin", first), ("b.bin", second)]) {
                let status = try await rpc.waitStopped(gid)
                #expect(status["status"] as? String == "complete")
                #expect(status["sha256"] as? String == content.sha256)
                #expect(try SHA256.hex(ofFileAt: scratch.file("root/\(name)").path) == content.sha256)
            }
            for server in servers { await server.shutdown() }
        }

        @Test("A metalink with one unusable file queues nothing")
        func allOrNothing() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let content = GeneratedContent(size: 10, seed: 963)
            let good = try metalinkFor(content, name: "good.bin", urls: [URL(string: "http://127.0.0.1:9/g")!])
            // A file where the second name needs a directory: nothing is queued, nothing followed.
            try Data("x".utf8).write(to: scratch.file("root/blocked"))
            let nested = try metalinkFor(content, name: "blocked/bad.bin", urls: [URL(string: "http://127.0.0.1:9/b")!])
            let both = try Metalink(files: good.files + nested.files)
            do {
                _ = try await rpc.call("aria2.addMetalink", [both.xmlData().base64EncodedString()])
                Issue.record("accepted")
            } catch let failure as RPCFailure {
                #expect(failure.message.contains("cannot hold"), "\(failure)")
            }
            let waiting = try #require(try await rpc.call("aria2.tellWaiting", [0, 10]) as? [Any])
            let active = try #require(try await rpc.call("aria2.tellActive") as? [Any])
            let stopped = try #require(try await rpc.call("aria2.tellStopped", [0, 10]) as? [Any])
            #expect(waiting.isEmpty && active.isEmpty && stopped.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: scratch.file("root/good.bin").path))
        }
    }
}

extension Integration.DaemonMetalinkTests {
    @Test("addMetalink uses the pieces (a mirror's bad range is fetched again), names with directories, SHA-512 only")
    func piecesDirectoriesSHA512() async throws {
        let servers = [try await TestServer.start(), try await TestServer.start()]
        let content = GeneratedContent(size: 4 << 20, seed: 964)
        let piece: Int64 = 256 << 10
        // The most preferred mirror serves other bytes inside piece 1; checked whole, the file
        // would fail its hash at the end.
        let lying = GeneratedContent(size: content.size, seed: 964, patches: [.init(from: piece + 10, to: piece + 11, seed: 2)])
        servers[0].serve(ServedFile(content: lying, etag: "\"a\""), at: "/f")
        servers[1].serve(ServedFile(content: content, etag: "\"b\""), at: "/f")
        var hash = EVPHash(.sha512)
        content.bytes(0..<content.size).withUnsafeBytes { hash.update($0) }
        let sha512 = hash.digest()
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let (daemon, rpc) = try await startDaemon(scratch)
        defer { Task { await daemon.stop() } }
        let metalink = try metalinkFor(content, name: "dist/v1/f.bin", urls: servers.map { $0.url("/f") }, pieceLength: piece,
                                       wholeHash: .init(type: "sha-512", value: sha512))
        let gids = try #require(try await rpc.call("aria2.addMetalink", [metalink.xmlData().base64EncodedString(), ["split": "1"]])
            as? [String])
        #expect(gids.count == 1)
        let status = try await rpc.waitStopped(gids[0])
        #expect(status["status"] as? String == "complete", "\(status)")
        #expect(try SHA256.hex(ofFileAt: scratch.file("root/dist/v1/f.bin").path) == content.sha256)
        // Only the bad piece came from the other mirror.
        #expect(servers[1].bytesSent <= piece + (64 << 10), "\(servers[1].bytesSent)")
        #expect(filesUnder(scratch.file("root")) == ["dist", "dist/v1", "dist/v1/f.bin"])
        // The kept metalink goes with the download.
        #expect(!FileManager.default.fileExists(atPath: scratch.file("state/metalink-\(gids[0]).meta4").path))
        for server in servers { await server.shutdown() }
    }
}
