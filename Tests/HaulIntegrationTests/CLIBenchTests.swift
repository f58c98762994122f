import Foundation
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
    }
}
