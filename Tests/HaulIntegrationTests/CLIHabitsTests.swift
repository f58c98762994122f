import Foundation
import Haul
import HaulTestServer
import Testing

/// Runs `haul` with `arguments`, `environment` added to this process's, and `input` on stdin.
func runHaul(_ arguments: [String], environment: [String: String] = [:], input: String?) throws -> CommandResult {
    let process = Process()
    process.executableURL = try haulExecutable()
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    let err = Pipe()
    let stdin = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try stdin.fileHandleForWriting.close()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderr, as: UTF8.self))
}

extension Integration {
    @Suite("haul takes the flags people type by habit")
    struct CLIHabitsTests {
        @Test("haul URL works without get, and a URL without a scheme is http://")
        func defaultCommandAndScheme() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 200_000, seed: 101)
            server.serve(ServedFile(content: content), at: "/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/f.bin").absoluteString
            let plain = try runHaul([url, "-o", scratch.file("a").path, "-q"])
            #expect(plain.status == 0, "stderr: \(plain.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("a").path) == content.sha256)
            let bare = String(url.dropFirst("http://".count))
            let noScheme = try runHaul([bare, "-o", scratch.file("b").path, "-q"])
            #expect(noScheme.status == 0, "stderr: \(noScheme.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("b").path) == content.sha256)
        }

        @Test("curl, wget and aria2 spellings: -O -L -U --header -t --tries --retry -s -x16 -j2")
        func spellings() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 102)
            server.serve(ServedFile(content: content), at: "/s.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/s.bin").absoluteString
            let curlish = try runHaul(["get", url, "-O", "-L", "-U", "habit/1", "--header", "X-Habit: yes", "--retry", "2",
                                       "-x4", "-d", scratch.file("c").path, "-q"])
            #expect(curlish.status == 0, "stderr: \(curlish.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("c/s.bin").path) == content.sha256)
            #expect(server.requests.allSatisfy { $0.headers["user-agent"] == "habit/1" && $0.headers["x-habit"] == "yes" })
            #expect(Set(server.requests.map(\.connection)).count <= 4)
            for (index, spelling) in [["-t", "2"], ["--tries", "2"], ["-t2"], ["-s", "2"], ["-s2"], ["-j2"], ["-k", "1M"]].enumerated() {
                let result = try runHaul(["get", url, "-o", scratch.file("w\(index)").path, "-q"] + spelling)
                #expect(result.status == 0, "\(spelling): \(result.stderr)")
                #expect(try SHA256.hex(ofFileAt: scratch.file("w\(index)").path) == content.sha256)
            }
        }

        @Test("An unknown option says so, never that it is not a URL")
        func unknownOption() throws {
            for arguments in [["get", "http://127.0.0.1:9/x", "--bogus"], ["--bogus", "http://127.0.0.1:9/x"],
                              ["http://127.0.0.1:9/x", "-Z"]] {
                let result = try runHaul(arguments)
                #expect(result.status == 64, "\(arguments): \(result.stderr)")
                #expect(result.stderr.lowercased().contains("unknown option"), "\(arguments): \(result.stderr)")
                #expect(!result.stderr.contains("is not an http"), "\(arguments): \(result.stderr)")
            }
        }

        @Test("-i - reads the URLs from standard input")
        func urlsFromStandardInput() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let contents = (0..<2).map { GeneratedContent(size: 50_000, seed: 103 + UInt64($0)) }
            for (index, content) in contents.enumerated() { server.serve(ServedFile(content: content), at: "/i\(index).bin") }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let list = "# two files\n" + (0..<2).map { server.url("/i\($0).bin").absoluteString }.joined(separator: "\n") + "\n"
            let result = try runHaul(["get", "-i", "-", "-d", scratch.url.path, "-q"], input: list)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            for (index, content) in contents.enumerated() {
                #expect(try SHA256.hex(ofFileAt: scratch.file("i\(index).bin").path) == content.sha256)
            }
        }

        @Test("--dry-run prints name, size, range support, validators and digest, and writes nothing")
        func dryRun() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 5 << 20, seed: 105)
            var file = ServedFile(content: content, etag: "\"dry\"", lastModified: "Tue, 01 Sep 2026 10:00:00 GMT")
            let digest = Data(try #require(content.sha256.hexBytes)).base64EncodedString()
            file.extraHeaders = [("Repr-Digest", "sha-256=:\(digest):")]
            server.serve(file, at: "/d.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let process = try runHaul(["get", server.url("/d.iso").absoluteString, "--dry-run", "-d", scratch.url.path])
            #expect(process.status == 0, "stderr: \(process.stderr)")
            let out = process.stdout
            #expect(out.contains("name:          d.iso"), "\(out)")
            #expect(out.contains("size:          5.0 MiB (5242880 bytes)"))
            #expect(out.contains("ranges:        yes"))
            #expect(out.contains("ETag:          \"dry\""))
            #expect(out.contains("Last-Modified: Tue, 01 Sep 2026 10:00:00 GMT"))
            #expect(out.contains("digest:        sha-256 \(content.sha256)"))
            #expect(scratch.contents.isEmpty)
            #expect(server.requests.count == 1)
            let missing = try runHaul(["get", server.url("/nope").absoluteString, "--dry-run"])
            #expect(missing.status == 2)
        }

        @Test("--on-complete runs after each download with the file's path")
        func onComplete() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 100_000, seed: 106)
            server.serve(ServedFile(content: content), at: "/h.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let marker = scratch.file("marker").path
            let result = try runHaul(["get", server.url("/h.bin").absoluteString, "-d", scratch.file("out").path, "-q",
                                      "--on-complete", "sha256sum \"$1\" > '\(marker)'; echo \"$HAUL_FILE\" >> '\(marker)'"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            let written = try String(contentsOfFile: marker, encoding: .utf8)
            #expect(written.hasPrefix(content.sha256), "\(written)")
            #expect(written.contains(scratch.file("out/h.bin").path))
        }

        @Test("~/.config/haul/config sets options; the command line wins; --no-config skips it")
        func configFile() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 100_000, seed: 107)
            server.serve(ServedFile(content: content), at: "/c.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let home = scratch.file("home")
            try FileManager.default.createDirectory(at: home.appendingPathComponent(".config/haul"), withIntermediateDirectories: true)
            try "# haul's defaults\nuser-agent from-config\n--max-tries=2\nno-sync\n"
                .write(to: home.appendingPathComponent(".config/haul/config"), atomically: true, encoding: .utf8)
            let environment = ["HOME": home.path, "XDG_CONFIG_HOME": ""]
            let url = server.url("/c.bin").absoluteString
            let configured = try runHaul([url, "-o", scratch.file("1").path, "-q"], environment: environment, input: nil)
            #expect(configured.status == 0, "stderr: \(configured.stderr)")
            #expect(server.requests.last?.headers["user-agent"] == "from-config")
            let typed = try runHaul(["get", url, "-o", scratch.file("2").path, "-q", "-U", "typed"], environment: environment, input: nil)
            #expect(typed.status == 0, "stderr: \(typed.stderr)")
            #expect(server.requests.last?.headers["user-agent"] == "typed")
            let skipped = try runHaul(["get", url, "-o", scratch.file("3").path, "-q", "--no-config"], environment: environment, input: nil)
            #expect(skipped.status == 0, "stderr: \(skipped.stderr)")
            #expect(server.requests.last?.headers["user-agent"]?.hasPrefix("haul/") == true)
            for name in ["1", "2", "3"] { #expect(try SHA256.hex(ofFileAt: scratch.file(name).path) == content.sha256) }
        }
    }
}

extension String {
    /// The bytes of a hex string.
    var hexBytes: [UInt8]? {
        var bytes: [UInt8] = []
        var index = startIndex
        while index < endIndex {
            let next = self.index(index, offsetBy: 2, limitedBy: endIndex) ?? endIndex
            guard let byte = UInt8(self[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}

extension Integration.CLIHabitsTests {
    @Test("-o - streams the file to standard output in order, verified, with nothing left in the temp directory")
    func streamToStandardOutput() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 6 << 20, seed: 108)
        // Slow enough that the journal records progress while it runs, so bytes go out early.
        server.serve(ServedFile(content: content, etag: "\"s\"", bytesPerSecond: 3 << 20), at: "/s.tar")
        let before = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
        let process = Process()
        process.executableURL = try haulExecutable()
        process.arguments = ["get", server.url("/s.tar").absoluteString, "-o", "-", "-x", "4", "--sha256", content.sha256]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        var hash = SHA256()
        var total = 0
        var firstChunkBeforeEnd = false
        while true {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            if total == 0 { firstChunkBeforeEnd = process.isRunning }
            hash.update(chunk)
            total += chunk.count
        }
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "stderr: \(stderr)")
        #expect(total == Int(content.size))
        #expect(hash.finalizeHex() == content.sha256)
        #expect(firstChunkBeforeEnd, "bytes reached standard output only at the end")
        #expect(stderr.contains("6.0 MiB written to standard output"), "stderr: \(stderr)")
        #expect(Set(server.requests.map(\.connection)).count > 1, "segments were not fetched ahead")
        let after = Set((try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? [])
        #expect(after.subtracting(before).filter { $0.hasPrefix("haul-stream") }.isEmpty)
    }
}
