import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("The haul command: names, batches, output formats")
    struct CLIBatchTests {
        @Test("Without -o the name comes from the URL; an existing file is kept unless --force")
        func nameFromURLAndOverwrite() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 300_000, seed: 101)
            server.serve(ServedFile(content: content), at: "/files/report%20v2.pdf")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/files/report%20v2.pdf").absoluteString
            let first = try runHaul(["get", url, "-d", scratch.url.path, "-q"])
            #expect(first.status == 0, "\(first.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("report v2.pdf").path) == content.sha256)

            try Data("mine".utf8).write(to: scratch.file("report v2.pdf"))
            let refused = try runHaul(["get", url, "-d", scratch.url.path])
            #expect(refused.status == 4)
            #expect(refused.stderr.contains("exists; use --force"))
            #expect(try Data(contentsOf: scratch.file("report v2.pdf")) == Data("mine".utf8))

            let forced = try runHaul(["get", url, "-d", scratch.url.path, "--force", "-q"])
            #expect(forced.status == 0)
            #expect(try SHA256.hex(ofFileAt: scratch.file("report v2.pdf").path) == content.sha256)
        }

        @Test("Content-Disposition names are reduced to a bare file name inside the directory", arguments: [
            ("attachment; filename=\"../../escape.sh\"", "escape.sh"),
            ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"),
            ("attachment; filename=\"a\tb\tc.txt\"", "abc.txt"),
            ("attachment; filename=\"..\"", "download.bin"),
            ("attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf; filename=\"fallback.pdf\"", "résumé.pdf"),
            ("attachment; filename=\"sem;i \\\"q\\\".txt\"; size=5", "sem;i \"q\".txt"),
        ])
        func contentDisposition(header: String, expected: String) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 50_000, seed: 102)
            var file = ServedFile(content: content)
            file.extraHeaders = [("Content-Disposition", header)]
            server.serve(file, at: "/download.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let inner = scratch.url.appendingPathComponent("inner")
            try FileManager.default.createDirectory(at: inner, withIntermediateDirectories: true)
            let result = try runHaul(["get", server.url("/download.bin").absoluteString, "-d", inner.path, "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: inner.path)) == [expected])
            #expect(scratch.contents == ["inner"], "a file escaped the directory: \(scratch.contents)")
            #expect(try SHA256.hex(ofFileAt: inner.appendingPathComponent(expected).path) == content.sha256)
        }

        @Test("--json prints one JSON object per line, the finish event carries the digest")
        func json() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 6 << 20, seed: 103)
            server.serve(ServedFile(content: content, bytesPerSecond: 1 << 20), at: "/j.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/j.bin").absoluteString, "-d", scratch.url.path, "--json", "-x", "4"])
            #expect(result.status == 0, "\(result.stderr)")
            let objects = try result.stdout.split(separator: "\n").map {
                try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
            let events = objects.compactMap { $0["event"] as? String }
            #expect(events.first == "start" && events.last == "finish")
            #expect(events.contains("progress"), "no progress event in a ~1.5 s download")
            let finish = try #require(objects.last)
            #expect(finish["sha256"] as? String == content.sha256)
            #expect(finish["bytes"] as? Int == Int(content.size))
            #expect(!result.stdout.contains("\u{1B}"))
        }

        @Test("Output that is not a terminal has no escape codes")
        func plainOutput() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 2 << 20, seed: 104), bytesPerSecond: 2 << 20), at: "/p")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/p").absoluteString, "-o", scratch.file("p").path, "-x", "2"])
            #expect(result.status == 0)
            #expect(!result.stdout.contains("\u{1B}") && !result.stderr.contains("\u{1B}"))
            #expect(result.stdout.contains("sha-256 "))
        }

        @Test("A batch of 20 URLs from -i with -j 4: every file exact")
        func batch() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let contents = (0..<20).map { GeneratedContent(size: Int64(200_000 + $0 * 7_919), seed: 200 + UInt64($0)) }
            var list = "# twenty files\n"
            for (index, content) in contents.enumerated() {
                server.serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/batch/f\(index).bin")
                list += server.url("/batch/f\(index).bin").absoluteString + "\n"
            }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let input = scratch.file("urls.txt")
            try list.write(to: input, atomically: true, encoding: .utf8)
            let out = scratch.url.appendingPathComponent("out")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let result = try runHaul(["get", "-i", input.path, "-j", "4", "-d", out.path, "-q", "-x", "2"])
            #expect(result.status == 0, "\(result.stderr)")
            for (index, content) in contents.enumerated() {
                #expect(try SHA256.hex(ofFileAt: out.appendingPathComponent("f\(index).bin").path) == content.sha256)
            }
        }

        @Test("The exit status is the first listed failure's, whichever ends first; -j 1 runs one after another")
        func exitStatusInListOrder() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            // The first takes about a second and fails its digest (3); the second is a 404 (2)
            // that ends long before.
            let slow = GeneratedContent(size: 2 << 20, seed: 311)
            server.serve(ServedFile(content: slow, bytesPerSecond: 2 << 20), at: "/slow.bin")
            let small = GeneratedContent(size: 1000, seed: 312)
            server.serve(ServedFile(content: small), at: "/small.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let sums = scratch.file("SHA256SUMS")
            try "\(String(repeating: "1", count: 64))  slow.bin\n\(small.sha256)  small.bin\n"
                .write(to: sums, atomically: true, encoding: .utf8)
            let input = scratch.file("urls.txt")
            try [server.url("/slow.bin"), server.url("/missing.bin"), server.url("/small.bin")]
                .map(\.absoluteString).joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
            for jobs in ["2", "1"] {
                let out = scratch.url.appendingPathComponent("out\(jobs)")
                try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
                let result = try runHaul(["get", "-i", input.path, "-j", jobs, "-d", out.path, "--checksum-file", sums.path,
                                          "--json", "-x", "1"])
                #expect(result.status == 3, "-j \(jobs): \(result.stderr)")
                #expect(try SHA256.hex(ofFileAt: out.appendingPathComponent("small.bin").path) == small.sha256)
                if jobs == "1" {
                    // Each download ends before the next starts.
                    let events = result.stdout.split(separator: "\n").compactMap { line -> String? in
                        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
                        return object["event"] as? String
                    }.filter { $0 != "progress" }
                    #expect(zip(events, events.dropFirst()).allSatisfy { !($0 == "start" && $1 == "start") }, "\(events)")
                }
            }
        }

        @Test("Usage errors name the problem and exit 64", arguments: [
            (["get", "http://127.0.0.1:1/a", "http://127.0.0.1:1/b", "-o", "x"], "-o names one file"),
            (["get", "http://127.0.0.1:1/a", "-o", "x", "-d", "y"], "give -o or -d, not both"),
            (["get", "http://127.0.0.1:1/a", "-o", "a/"], "-o 'a/' names a directory"),
            (["get", "http://127.0.0.1:1/a", "-o", "new/dir/"], "use -d 'new/dir/'"),
            (["get", "http://127.0.0.1:1/a", "-o", "d/.."], "names a directory"),
            (["get", "http://127.0.0.1:1/a", "-o", ".f.bin.haul-part"], "haul's own side files"),
            (["get", "http://127.0.0.1:1/a", "-o", "d/.f.bin.haul-journal"], "haul's own side files"),
            (["daemon", "--state-dir", ""], "--state-dir is empty"),
            (["daemon", "--state-dir", "/dev/null"], "--state-dir '/dev/null' is not a directory"),
            (["get", "http://127.0.0.1:1/a", "-j", "0"], "--max-concurrent-downloads must be at least 1"),
            (["get", "http://127.0.0.1:1/a", "-H", "novalue"], "-H takes 'Name: value'"),
            (["get", "http://127.0.0.1:1/a", "-q", "--json"], "give -q or --json"),
            (["get"], "give at least one URL"),
            (["get", "http://127.0.0.1:1/a", "--no-hash", "--sha256", String(repeating: "a", count: 64)], "--no-hash"),
        ])
        func usage(arguments: [String], message: String) throws {
            let result = try runHaul(arguments)
            #expect(result.status == 64)
            #expect(result.stderr.contains(message), "stderr: \(result.stderr)")
        }

        @Test("haul demo shows both speeds, the speedup and the verified digest, and cleans up")
        func demo() throws {
            let before = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
            let result = try runHaul(["demo", "--size", "4M", "--rate", "2M", "-x", "8"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("1 connection:") && result.stdout.contains("8 connections:"))
            #expect(result.stdout.contains("speedup:"))
            #expect(result.stdout.contains("SHA-256 verified"))
            // The hint is runnable as printed: it names the binary that ran.
            let next = result.stdout.components(separatedBy: "Next: `").last?.components(separatedBy: " ").first ?? ""
            #expect(next == (try haulExecutable()).standardizedFileURL.path, "stdout: \(result.stdout)")
            #expect(result.stdout.contains("make install"))
            let after = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
            #expect(after.subtracting(before).filter { $0.hasPrefix("haul-demo") }.isEmpty)
        }

        @Test("-H and --user-agent reach the server on every request; --limit-rate caps the download")
        func transferOptions() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 105)
            server.serve(ServedFile(content: content), at: "/t")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let started = ContinuousClock.now
            let result = try runHaul(["get", server.url("/t").absoluteString, "-o", scratch.file("t").path, "-x", "4", "--fixed",
                                      "-H", "X-Token: abc", "--user-agent", "tester/1", "--limit-rate", "2M", "-q"])
            let elapsed = ContinuousClock.now - started
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("t").path) == content.sha256)
            #expect(server.requests.count >= 2)
            #expect(server.requests.allSatisfy { $0.headers["x-token"] == "abc" && $0.headers["user-agent"] == "tester/1" })
            // 3 MiB at 2 MiB/s over all connections: at least about a second (unlimited: a few ms).
            #expect(elapsed >= .milliseconds(1000), "took \(elapsed)")
        }

        @Test("--version and help")
        func versionAndHelp() throws {
            let version = try runHaul(["--version"])
            #expect(version.status == 0 && version.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == Haul.version)
            let help = try runHaul(["help", "get"])
            #expect(help.status == 0)
            for word in ["--dir", "--json", "--input-file", "--max-concurrent-downloads", "--limit-rate", "--force",
                         "Exit codes", "130 interrupted"] {
                #expect(help.stdout.contains(word), "help lacks \(word)")
            }
        }
    }
}
