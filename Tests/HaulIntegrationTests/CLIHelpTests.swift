import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("haul's help and error advice")
    struct CLIHelpTests {
        @Test("--help shows sizes as typed, wraps each paragraph once, and has EXAMPLES")
        func help() throws {
            let result = try runHaul(["get", "--help"])
            #expect(result.status == 0)
            let help = result.stdout
            #expect(!help.contains("ByteSize("), "\(help)")
            let flat = help.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            #expect(flat.contains("(default: 1M)") && flat.contains("(default: 16K)"), "\(help)")
            #expect(help.contains("EXAMPLES:") && help.contains("  haul get https://example.org/big.iso\n"))
            // Text paragraphs before USAGE: every line but a paragraph's last is filled (a line
            // broken in the source and again by the help formatter leaves short lines).
            let discussion = try #require(help.components(separatedBy: "USAGE:").first)
            for paragraph in discussion.components(separatedBy: "\n\n") {
                let lines = paragraph.split(separator: "\n").map(String.init)
                guard let first = lines.first, !first.hasPrefix(" "), !first.hasSuffix(":") else { continue }
                for line in lines.dropLast() where !line.hasPrefix("OVERVIEW") {
                    #expect(line.count >= 60, "a short line inside a paragraph: '\(line)'")
                }
            }
        }

        @Test("A TLS failure advises --cacert or --insecure, not the network")
        func tlsAdvice() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 1000, seed: 99)), at: "/t")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            // A plain HTTP server spoken to over TLS: the handshake fails.
            var components = URLComponents(url: server.url("/t"), resolvingAgainstBaseURL: false)!
            components.scheme = "https"
            let result = try runHaul(["get", components.url!.absoluteString, "-o", scratch.file("t").path, "--max-tries", "0"])
            #expect(result.status == 1, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("--cacert") && result.stderr.contains("--insecure"), "stderr: \(result.stderr)")
            #expect(!result.stderr.contains("check the network"))
            #expect(scratch.contents.isEmpty)
        }
    }
}
