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
            let nested = try metalinkFor(content, name: "dir/bad.bin", urls: [URL(string: "http://127.0.0.1:9/b")!])
            let both = try Metalink(files: good.files + nested.files)
            do {
                _ = try await rpc.call("aria2.addMetalink", [both.xmlData().base64EncodedString()])
                Issue.record("accepted")
            } catch let failure as RPCFailure {
                #expect(failure.message.contains("not a plain file name"), "\(failure)")
            }
            let waiting = try #require(try await rpc.call("aria2.tellWaiting", [0, 10]) as? [Any])
            let active = try #require(try await rpc.call("aria2.tellActive") as? [Any])
            let stopped = try #require(try await rpc.call("aria2.tellStopped", [0, 10]) as? [Any])
            #expect(waiting.isEmpty && active.isEmpty && stopped.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: scratch.file("root/good.bin").path))
        }
    }
}
