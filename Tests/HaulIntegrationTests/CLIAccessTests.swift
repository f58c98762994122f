import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("haul get: netrc, cookie files, timestamping, an overall rate limit")
    struct CLIAccessTests {
        @Test("--netrc-file and --netrc send the file's credentials to its host")
        func netrc() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 100_000, seed: 121)
            server.serve(ServedFile(content: content), at: "/n.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let netrc = scratch.file("netrc")
            try "machine 127.0.0.1 login alice password s3cret\n".write(to: netrc, atomically: true, encoding: .utf8)
            let url = server.url("/n.bin").absoluteString
            let result = try runHaul(["get", url, "-o", scratch.file("a").path, "-q", "--netrc-file", netrc.path])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("a").path) == content.sha256)
            let expected = "Basic " + Data("alice:s3cret".utf8).base64EncodedString()
            #expect(!server.requests.isEmpty && server.requests.allSatisfy { $0.headers["authorization"] == expected })
            // --netrc reads ~/.netrc.
            let home = scratch.file("home")
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: netrc, to: home.appendingPathComponent(".netrc"))
            let before = server.requests.count
            let byHome = try runHaul(["get", url, "-o", scratch.file("b").path, "-q", "--netrc", "--no-config"],
                                     environment: ["HOME": home.path], input: nil)
            #expect(byHome.status == 0, "stderr: \(byHome.stderr)")
            #expect(server.requests[before...].allSatisfy { $0.headers["authorization"] == expected })
            // Neither the journal nor the output shows the password.
            #expect(!byHome.stdout.contains("s3cret") && !byHome.stderr.contains("s3cret"))
            let missing = try runHaul(["get", url, "--netrc-file", scratch.file("none").path])
            #expect(missing.status == 64 && missing.stderr.contains("--netrc-file"))
        }

        @Test("--load-cookies sends a Netscape cookie file's cookies")
        func cookies() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 100_000, seed: 122)
            server.serve(ServedFile(content: content), at: "/c.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let jar = scratch.file("cookies.txt")
            try "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc123\n"
                .write(to: jar, atomically: true, encoding: .utf8)
            let result = try runHaul(["get", server.url("/c.bin").absoluteString, "-o", scratch.file("c").path, "-q",
                                      "--load-cookies", jar.path])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("c").path) == content.sha256)
            #expect(!server.requests.isEmpty && server.requests.allSatisfy { $0.headers["cookie"] == "session=abc123" })
        }

        @Test("-N fetches only when the server's copy is newer, and gives the file the server's time")
        func timestamping() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let old = GeneratedContent(size: 60_000, seed: 123)
            let new = GeneratedContent(size: 70_000, seed: 124)
            server.serve(ServedFile(content: old, etag: "\"1\"", lastModified: "Tue, 01 Sep 2026 10:00:00 GMT"), at: "/t.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("t.bin").path
            let url = server.url("/t.bin").absoluteString
            let first = try runHaul(["get", url, "-o", output, "-N", "-q"])
            #expect(first.status == 0, "stderr: \(first.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == old.sha256)
            let stamped = try #require(try FileManager.default.attributesOfItem(atPath: output)[.modificationDate] as? Date)
            #expect(Int(stamped.timeIntervalSince1970) == 1_788_256_800)
            // Not newer: nothing fetched, the file stays.
            let before = server.requests.count
            let same = try runHaul(["get", url, "-o", output, "-N"])
            #expect(same.status == 0 && same.stderr.contains("up to date"), "stderr: \(same.stderr)")
            #expect(server.requests.count == before + 1)
            #expect(try SHA256.hex(ofFileAt: output) == old.sha256)
            // Newer on the server: fetched again and replaced.
            server.serve(ServedFile(content: new, etag: "\"2\"", lastModified: "Wed, 02 Sep 2026 10:00:00 GMT"), at: "/t.bin")
            let newer = try runHaul(["get", url, "-o", output, "-N", "-q"])
            #expect(newer.status == 0, "stderr: \(newer.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == new.sha256)
        }

        @Test("--overall-limit-rate holds a batch to one limit together")
        func overallLimit() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let contents = (0..<2).map { GeneratedContent(size: 768 << 10, seed: 125 + UInt64($0)) }
            for (index, content) in contents.enumerated() { server.serve(ServedFile(content: content), at: "/o\(index).bin") }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let urls = (0..<2).map { server.url("/o\($0).bin").absoluteString }
            let started = ContinuousClock.now
            let result = try runHaul(["get"] + urls + ["-d", scratch.url.path, "-q", "--overall-limit-rate", "1M", "-j", "2"])
            let elapsed = ContinuousClock.now - started
            #expect(result.status == 0, "stderr: \(result.stderr)")
            for (index, content) in contents.enumerated() {
                #expect(try SHA256.hex(ofFileAt: scratch.file("o\(index).bin").path) == content.sha256)
            }
            // 1.5 MiB at 1 MiB/s together cannot take much under 1.5 s (a lower bound only).
            #expect(elapsed >= .milliseconds(1200), "took \(elapsed)")
        }

        @Test("-c on a file already whole finishes at once after checking its digest; without one, or short or different, it fails, never restarts")
        func continueCompleteFile() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 300_000, seed: 127)
            server.serve(ServedFile(content: content, etag: "\"c\""), at: "/whole.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("whole.bin").path
            let url = server.url("/whole.bin").absoluteString
            #expect(try runHaul(["get", url, "-o", output, "-q"]).status == 0)
            let before = server.requests.count
            // Whole in size with matching ends, but no digest: the middle could be a gap that a
            // preallocating downloader left (here it is one), so it is not called complete.
            let whole = try Data(contentsOf: URL(fileURLWithPath: output))
            var holed = whole
            holed.replaceSubrange(100_000..<200_000, with: Data(count: 100_000))
            try holed.write(to: URL(fileURLWithPath: output))
            let again = try runHaul(["get", url, "-o", output, "-c"])
            #expect(again.status == 4, "stderr: \(again.stderr)")
            #expect(again.stderr.contains("cannot tell whether \(output) is complete") && again.stderr.contains("give --sha256"),
                    "stderr: \(again.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == holed)
            // A one-byte probe, the head and the tail: no download.
            #expect(!server.requests[before...].contains { $0.range == "bytes=0-" }, "\(server.requests[before...])")
            #expect(server.requests.count - before == 3)
            try whole.write(to: URL(fileURLWithPath: output))
            let verified = try runHaul(["get", url, "-o", output, "-c", "--sha256", content.sha256])
            #expect(verified.status == 0 && verified.stderr.contains("its SHA-256 matches"), "stderr: \(verified.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
            // A whole file whose SHA-256 is not the one asked for: refused, left alone.
            let wrong = String(repeating: "7", count: 64)
            let mismatch = try runHaul(["get", url, "-o", output, "-c", "--sha256", wrong])
            #expect(mismatch.status != 0 && mismatch.stderr.contains("its SHA-256 is"), "stderr: \(mismatch.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)

            // The same size, other bytes at the end: refused, left alone.
            var bytes = try Data(contentsOf: URL(fileURLWithPath: output))
            bytes[bytes.count - 1] ^= 0xFF
            try bytes.write(to: URL(fileURLWithPath: output))
            let changed = try runHaul(["get", url, "-o", output, "-c"])
            #expect(changed.status == 4 && changed.stderr.contains("differ from the server's"), "stderr: \(changed.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == bytes)

            // A shorter file another program left (no journal): its last 64 KiB are compared
            // with the server's, then only the rest is fetched.
            try Data(content.bytes(0..<100_000)).write(to: URL(fileURLWithPath: output))
            let requestsBefore = server.requests.count
            let partial = try runHaul(["get", url, "-o", output, "-c", "-x", "2"])
            #expect(partial.status == 0, "stderr: \(partial.stderr)")
            #expect(partial.stderr.contains("continuing another program's partial file"), "stderr: \(partial.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
            #expect(!server.requests[requestsBefore...].contains { $0.range == "bytes=0-" }, "\(server.requests[requestsBefore...])")
            #expect(scratch.contents == ["whole.bin"])

            // A shorter file whose end is not the server's: refused, left as it was.
            var other = Data(content.bytes(0..<100_000))
            other[other.count - 10] ^= 0xFF
            try other.write(to: URL(fileURLWithPath: output))
            let refused = try runHaul(["get", url, "-o", output, "-c"])
            #expect(refused.status == 4 && refused.stderr.contains("never starts over"), "stderr: \(refused.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == other)

            // Another version's partial file: the same end, another start (a new version most
            // often differs in its header). Refused, left as it was, rather than spliced.
            // The same for a file that is whole in size.
            for (size, message) in [(200_000, "its first 64.0 KiB are not the server's bytes"),
                                    (300_000, "its first 64.0 KiB differ from the server's")] {
                var older = Data(content.bytes(0..<Int64(size)))
                older[10] ^= 0xFF
                try older.write(to: URL(fileURLWithPath: output))
                let spliced = try runHaul(["get", url, "-o", output, "-c"])
                #expect(spliced.status == 4 && spliced.stderr.contains(message), "stderr: \(spliced.stderr)")
                #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == older)
            }
        }
    }
}
