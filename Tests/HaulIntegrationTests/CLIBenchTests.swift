import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("haul bench")
    struct CLIBenchTests {
        @Test("Three mirrors with known rates are ranked fastest first; the JSON has the documented fields")
        func ranking() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 32 << 20, seed: 131)
            // Per-connection rates: 512 KiB/s, 2 MiB/s, 1 MiB/s.
            for (server, rate) in zip(servers, [512 << 10, 2 << 20, 1 << 20]) {
                server.serve(ServedFile(content: content, etag: "\"b\"", bytesPerSecond: rate), at: "/f")
            }
            let urls = servers.map { $0.url("/f").absoluteString }
            let result = try runHaul(["bench"] + urls + ["--duration", "1", "-x", "4", "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            let mirrors = try #require(document["mirrors"] as? [[String: Any]])
            #expect(mirrors.compactMap { $0["url"] as? String } == [urls[1], urls[2], urls[0]])
            #expect(document["validators_agree"] as? Bool == true)
            for mirror in mirrors {
                for key in ["rank", "url", "connections", "single_connection_bytes_per_second",
                            "multi_connection_bytes_per_second", "supports_ranges", "time_to_first_byte_seconds",
                            "length", "etag"] {
                    #expect(mirror[key] != nil, "missing \(key)")
                }
                #expect(mirror["length"] as? Int == Int(content.size))
                #expect(mirror["supports_ranges"] as? Bool == true)
                let single = try #require(mirror["single_connection_bytes_per_second"] as? Int)
                let multi = try #require(mirror["multi_connection_bytes_per_second"] as? Int)
                #expect(multi > 2 * single, "4 connections should beat one on a per-connection limit")
            }
            let table = try runHaul(["bench"] + urls + ["--duration", "0.5", "-x", "2"])
            #expect(table.status == 0)
            #expect(table.stdout.contains("All mirrors agree"))
            #expect(table.stdout.split(separator: "\n").dropFirst().first?.contains(urls[1]) == true)
            for server in servers { await server.shutdown() }
        }

        @Test("haul get --mirror and --same-file fetch one file from several servers")
        func mirrorsFromTheCommandLine() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 12 << 20, seed: 132)
            for server in servers { server.serve(ServedFile(content: content, etag: "\"c\"", bytesPerSecond: 2 << 20), at: "/f") }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let urls = servers.map { $0.url("/f").absoluteString }
            let viaMirror = try runHaul(["get", urls[0], "--mirror", urls[1], "--mirror", urls[2], "-o", scratch.file("a").path,
                                         "-x", "6", "-q"])
            #expect(viaMirror.status == 0, "\(viaMirror.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("a").path) == content.sha256)
            #expect(servers.allSatisfy { $0.bytesSent > 0 }, "a mirror was not used")
            let viaSameFile = try runHaul(["get", "--same-file"] + urls + ["-o", scratch.file("b").path, "-x", "6", "-q"])
            #expect(viaSameFile.status == 0, "\(viaSameFile.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("b").path) == content.sha256)
            #expect(scratch.contents.sorted() == ["a", "b"])
            for server in servers { await server.shutdown() }
        }

        @Test("--mirror-select fastest starts from the fastest source")
        func mirrorSelectFastest() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 8 << 20, seed: 133)
            servers[0].serve(ServedFile(content: content, etag: "\"c\"", bytesPerSecond: 256 << 10), at: "/f")
            servers[1].serve(ServedFile(content: content, etag: "\"c\"", bytesPerSecond: 4 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let urls = servers.map { $0.url("/f").absoluteString }
            let result = try runHaul(["get", urls[0], "--mirror", urls[1], "--mirror-select", "fastest",
                                      "-o", scratch.file("f").path, "-x", "4"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("fastest source: \(urls[1])"))
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            // The download's probe (Range: bytes=0- after the measuring requests) went to the fast one.
            #expect(servers[1].requests.contains { $0.range == "bytes=0-" })
            #expect(!servers[0].requests.contains { $0.range == "bytes=0-" })
            for server in servers { await server.shutdown() }
        }
    }
}
