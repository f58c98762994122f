import Foundation
import Haul
import HaulTestServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// `-c` taking over another program's partial file: whatever stops it (a kill, a failed
    /// request, the user starting over, a changed file), the user's bytes stay or come back.
    @Suite("The haul command: taking over another program's file")
    struct CLITakeoverTests {
        @Test("A takeover killed half way (journal written, file not yet renamed, or renamed but not yet extended) is undone and done again")
        func interruptedTakeover() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 600_000, seed: 142)
            server.serve(ServedFile(content: content, etag: "\"t\""), at: "/t.bin")
            for stage in ["not renamed", "not extended"] {
                let scratch = Scratch()
                defer { scratch.cleanup() }
                let output = scratch.file("t.bin")
                let mine = Data(content.bytes(0..<250_000))
                try mine.write(to: output)
                _ = try DownloadSession.adoptPartialFile(at: output, url: server.url("/t.bin"), length: 600_000, prefix: 250_000,
                                                         etag: "\"t\"", lastModified: nil, expectedSHA256: nil)
                // What a kill at that step leaves (the journal is the takeover's own).
                let partial = scratch.file(".t.bin.haul-part")
                try FileHandle(forWritingTo: partial).truncate(atOffset: 250_000)
                if stage == "not renamed" { #expect(rename(partial.path, output.path) == 0) }
                let result = try runHaul(["get", server.url("/t.bin").absoluteString, "-o", output.path, "-c", "-x", "2"])
                #expect(result.status == 0, "\(stage): stderr: \(result.stderr)")
                #expect(result.stderr.contains("an earlier -c was stopped while taking over the file"), "\(stage): \(result.stderr)")
                #expect(try SHA256.hex(ofFileAt: output.path) == content.sha256, "\(stage)")
                #expect(scratch.contents == ["t.bin"], "\(stage)")
            }
        }

        @Test("A file with another hard link is not taken over, and the message says why")
        func hardLinkedFile() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 600_000, seed: 146)
            server.serve(ServedFile(content: content, etag: "\"h\""), at: "/h.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("h.bin")
            let mine = Data(content.bytes(0..<250_000))
            try mine.write(to: output)
            #expect(link(output.path, scratch.file("backup").path) == 0)
            let result = try runHaul(["get", server.url("/h.bin").absoluteString, "-o", output.path, "-c"])
            #expect(result.status == 4 && result.stderr.contains("it has 2 hard links"), "stderr: \(result.stderr)")
            #expect(try Data(contentsOf: output) == mine && (try Data(contentsOf: scratch.file("backup"))) == mine)
            #expect(scratch.contents.sorted() == ["backup", "h.bin"])
        }

        @Test("The server failing while the ends are compared is a network error; the file is left as it is")
        func comparisonFails() async throws {
            let json = """
            {"versions": [{"seed": 143, "size": 600000, "etag": "\\"c\\""}], "paths": ["/c.bin"],
             "rules": [{"when": {"range": "bytes=0-65535"}, "then": {"status": 503}}]}
            """
            let behaviour = try JSONDecoder().decode(ScenarioBehaviour.self, from: Data(json.utf8))
            let server = try await ScenarioServer.start(behaviour)
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("c.bin")
            let mine = Data(behaviour.versions[0].content.bytes(0..<250_000))
            try mine.write(to: output)
            let result = try runHaul(["get", server.url("/c.bin").absoluteString, "-o", output.path, "-c"])
            #expect(result.status == 1, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("the file is left as it is") && !result.stderr.contains("--force"), "stderr: \(result.stderr)")
            #expect(try Data(contentsOf: output) == mine)
            #expect(scratch.contents == ["c.bin"])
        }

        @Test("After a takeover was interrupted, --no-resume puts the file back as it was; a changed file does the same without -c")
        func startingOverGivesItBack() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let old = GeneratedContent(size: 8 << 20, seed: 144)
            let mine = Data(old.bytes(0..<(3 << 20)))
            for ending in ["--no-resume", "changed"] {
                server.serve(ServedFile(content: old, etag: "\"o\"", bytesPerSecond: 1 << 20), at: "/g.bin")
                let scratch = Scratch()
                defer { scratch.cleanup() }
                let output = scratch.file("g.bin")
                try mine.write(to: output)
                let arguments = ["get", server.url("/g.bin").absoluteString, "-o", output.path, "-x", "2"]
                let run = try RunningHaul(arguments + ["-c"])
                try await Task.sleep(for: .milliseconds(700))
                kill(run.process.processIdentifier, SIGINT)
                #expect(await run.finish().status == 130, "\(ending)")
                #expect(!FileManager.default.fileExists(atPath: output.path), "\(ending): not taken over")
                let result: CommandResult
                if ending == "--no-resume" {
                    result = try runHaul(arguments + ["--no-resume"])
                    #expect(result.stderr.contains("back under its name, as it was"), "\(ending): \(result.stderr)")
                    #expect(result.status == 4 && result.stderr.contains("exists"), "\(ending): \(result.stderr)")
                } else {
                    server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 145), etag: "\"n\""), at: "/g.bin")
                    result = try runHaul(arguments)
                    #expect(result.status == 1 && result.stderr.contains("the file changed on the server"), "\(ending): \(result.stderr)")
                    #expect(result.stderr.contains("is left as it was found"), "\(ending): \(result.stderr)")
                }
                #expect(try Data(contentsOf: output) == mine, "\(ending)")
                #expect(scratch.contents == ["g.bin"], "\(ending)")
            }
        }
    }
}
