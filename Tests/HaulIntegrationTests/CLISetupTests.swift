import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("haul set-up: directories, completions, install")
    struct CLISetupTests {
        @Test("-d and -o make missing parent directories, and the bytes land there")
        func makesParents() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 300_000, seed: 61)
            server.serve(ServedFile(content: content), at: "/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/f.bin").absoluteString
            let nested = scratch.file("a/b/c").path
            let byDir = try runHaul(["get", url, "-d", nested, "-x", "2"])
            #expect(byDir.status == 0, "stderr: \(byDir.stderr)")
            #expect(try SHA256.hex(ofFileAt: nested + "/f.bin") == content.sha256)
            let output = scratch.file("x/y/out.bin").path
            let byOutput = try runHaul(["get", url, "-o", output, "-q"])
            #expect(byOutput.status == 0, "stderr: \(byOutput.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("x/y").path) == ["out.bin"])
        }

        @Test("A relative -d is made under the current directory")
        func relativeDirectory() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4000, seed: 62)
            server.serve(ServedFile(content: content), at: "/r.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let process = Process()
            process.executableURL = try haulExecutable()
            process.arguments = ["get", server.url("/r.bin").absoluteString, "-d", "downloads/today/", "-q"]
            process.currentDirectoryURL = scratch.url
            try process.run()
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    process.waitUntilExit()
                    continuation.resume()
                }
            }
            #expect(process.terminationStatus == 0)
            #expect(try SHA256.hex(ofFileAt: scratch.file("downloads/today/r.bin").path) == content.sha256)
        }

        @Test("A symbolic link or a file where a directory must be made is refused, naming it")
        func refusesLinksAndFiles() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 1000, seed: 63)), at: "/s.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let elsewhere = Scratch()
            defer { elsewhere.cleanup() }
            try FileManager.default.createSymbolicLink(atPath: scratch.file("link").path, withDestinationPath: elsewhere.url.path)
            let url = server.url("/s.bin").absoluteString
            let throughLink = try runHaul(["get", url, "-d", scratch.file("link/sub").path])
            #expect(throughLink.status == 4)
            #expect(throughLink.stderr.contains(scratch.file("link").path) && throughLink.stderr.contains("symbolic link"),
                    "stderr: \(throughLink.stderr)")
            #expect(elsewhere.contents.isEmpty)
            _ = FileManager.default.createFile(atPath: scratch.file("plain").path, contents: Data("keep".utf8))
            let throughFile = try runHaul(["get", url, "-o", scratch.file("plain/sub/out.bin").path])
            #expect(throughFile.status == 4)
            #expect(throughFile.stderr.contains(scratch.file("plain").path) && throughFile.stderr.contains("a file is in the way"),
                    "stderr: \(throughFile.stderr)")
            #expect(try String(contentsOfFile: scratch.file("plain").path, encoding: .utf8) == "keep")
            #expect(server.requests.isEmpty)
        }

        @Test("An error about the partial file names the user's path, never the hidden .NAME.haul-part")
        func errorsNameTheUsersPath() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 100_000, seed: 64)), at: "/p.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            // Something that is not a file where the partial file goes.
            try FileManager.default.createDirectory(at: scratch.file(".p.bin.haul-part"), withIntermediateDirectories: false)
            let output = scratch.file("p.bin").path
            let result = try runHaul(["get", server.url("/p.bin").absoluteString, "-o", output])
            #expect(result.status == 4)
            #expect(result.stderr.contains(output), "stderr: \(result.stderr)")
            #expect(!result.stderr.contains("haul-part"), "stderr: \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
        }

        @Test("Completion scripts for bash, zsh and fish")
        func completions() throws {
            let bash = try runHaul(["--generate-completion-script", "bash"])
            #expect(bash.status == 0 && bash.stdout.contains("complete") && bash.stdout.contains("haul"))
            let zsh = try runHaul(["--generate-completion-script", "zsh"])
            #expect(zsh.status == 0 && zsh.stdout.hasPrefix("#compdef haul"))
            let fish = try runHaul(["--generate-completion-script", "fish"])
            #expect(fish.status == 0 && fish.stdout.contains("complete -c 'haul'"))
        }
    }
}
