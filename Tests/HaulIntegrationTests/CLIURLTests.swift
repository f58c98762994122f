import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("The haul command: URLs as typed, and what is read from them")
    struct CLIURLTests {
        @Test("Characters a URL cannot hold are encoded once; escapes already there are sent as typed, as curl sends them")
        func encodedOnce() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 20_000, seed: 135)
            server.serve(ServedFile(content: content, etag: "\"u\""), at: "/u.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("u.bin").path
            // Brackets outside the host are encoded too (Foundation would otherwise encode it all again).
            let cases = [("?x=a%2Fb&y=a|b&z=\"q\"&w=50%", "?x=a%2Fb&y=a%7Cb&z=%22q%22&w=50%25"),
                         ("?x=[1]|2&s=a%20b", "?x=%5B1%5D%7C2&s=a%20b"),
                         ("?n=\u{E9}t\u{E9} x%zz", "?n=%C3%A9t%C3%A9%20x%25zz"),
                         ("?a=b&c=%2F&d=~'()*", "?a=b&c=%2F&d=~'()*")]
            for (query, sent) in cases {
                let before = server.requests.count
                let result = try runHaul(["get", server.url("/u.bin").absoluteString + query, "-o", output, "-q", "--force"])
                #expect(result.status == 0, "stderr: \(result.stderr)")
                #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
                #expect(server.requests[before...].allSatisfy { $0.target == "/u.bin" + sent },
                        "\(server.requests[before...].map(\.target))")
            }
        }

        @Test("A URL list with a tab inside a line, or a line that is not UTF-8, is refused, naming the line; nothing is fetched")
        func listLinesRefused() throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let cases: [(Data, String)] = [
                (Data("# list\nhttp://127.0.0.1:9/a.bin\r\nhttp://127.0.0.1:9/b.bin\thttp://127.0.0.1:9/c.bin\n".utf8),
                 "line 3 of the input file"),
                (Data("http://127.0.0.1:9/a.bin\n".utf8) + Data([0x68, 0xFF, 0xFE, 0x0A]), "is not UTF-8 text (line 2)"),
            ]
            for (index, (list, message)) in cases.enumerated() {
                let path = scratch.file("list\(index).txt").path
                try list.write(to: URL(fileURLWithPath: path))
                let result = try runHaul(["get", "-i", path, "-d", scratch.file("out").path, "-q"])
                #expect(result.status == 64)
                #expect(result.stderr.contains(message), "\(result.stderr)")
                #expect(!FileManager.default.fileExists(atPath: scratch.file("out").path))
            }
        }

        @Test("A metalink URL whose answer is longer than any metalink is stopped, not read to the end")
        func hugeMetalink() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 80 << 20, seed: 138), etag: "\"h\""), at: "/huge.meta4")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            // Its own temporary directory, to see that nothing is left there either.
            let temporary = scratch.file("tmp")
            try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: false)
            let out = scratch.file("out")
            let result = try runHaul(["get", "--metalink", server.url("/huge.meta4").absoluteString, "-d", out.path],
                                     environment: ["TMPDIR": temporary.path])
            #expect(result.status != 0 && result.stderr.contains("larger than 64 MiB"), "stderr: \(result.stderr)")
            #expect(server.bytesSent < 64 << 20, "sent \(server.bytesSent) bytes")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []).isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: temporary.path).isEmpty, "the temporary file or its journal is left")
        }
    }
}

extension Integration.CLIURLTests {
    @Test("A batch of more files than the descriptor limit finishes: nothing of a finished download stays open")
    func batchPastDescriptorLimit() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let contents = (0..<300).map { GeneratedContent(size: 2_000 + Int64($0), seed: 3000 + UInt64($0)) }
        var list = ""
        for (index, content) in contents.enumerated() {
            server.serve(ServedFile(content: content), at: "/many/f\(index).bin")
            list += server.url("/many/f\(index).bin").absoluteString + "\n"
        }
        try list.write(to: scratch.file("urls.txt"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: scratch.file("out"), withIntermediateDirectories: false)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "ulimit -n 200 && exec \"$0\" \"$@\"", try haulExecutable().path,
                             "get", "-i", scratch.file("urls.txt").path, "-d", scratch.file("out").path, "-j", "8", "-q",
                             "--no-sync"]
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "stderr: \(stderr.prefix(2000))")
        for (index, content) in contents.enumerated() where index % 50 == 0 || index == 299 {
            #expect(try SHA256.hex(ofFileAt: scratch.file("out/f\(index).bin").path) == content.sha256)
        }
    }
}
