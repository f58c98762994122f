import Foundation
import Haul
import HaulTestServer
import Testing

/// The result of running the built `haul` binary.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The built `haul` binary (next to the test bundle).
func haulExecutable() throws -> URL {
    let binary = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("haul")
    let candidates = [binary] + CommandLine.arguments.prefix(1).map {
        URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("haul")
    }
    guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: binary.path])
    }
    return executable
}

/// A running `haul` whose output goes to files (so it can be killed at any time).
struct RunningHaul {
    let process: Process
    let stdout: URL
    let stderr: URL

    init(_ arguments: [String]) throws {
        process = Process()
        process.executableURL = try haulExecutable()
        process.arguments = arguments
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("haul-cli-\(UUID().uuidString)")
        stdout = base.appendingPathExtension("out")
        stderr = base.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: stdout)
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
    }

    /// Waits for the process (off the cooperative pool) and collects its output.
    func finish() async -> CommandResult {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                process.waitUntilExit()
                let out = (try? String(contentsOf: stdout, encoding: .utf8)) ?? ""
                let err = (try? String(contentsOf: stderr, encoding: .utf8)) ?? ""
                try? FileManager.default.removeItem(at: stdout)
                try? FileManager.default.removeItem(at: stderr)
                continuation.resume(returning: CommandResult(status: process.terminationStatus, stdout: out, stderr: err))
            }
        }
    }
}

/// Runs `haul` with `arguments` to the end (with `environment` added to this process's).
func runHaul(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = try haulExecutable()
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                         stderr: String(decoding: stderr, as: UTF8.self))
}

extension Integration {
    @Suite("The haul command")
    struct CLITests {
        @Test("haul get -o downloads the exact bytes and exits 0")
        func get() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: (5 << 20) + 3, seed: 51)
            server.serve(ServedFile(content: content), at: "/file.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("file.bin").path
            let result = try runHaul(["get", server.url("/file.bin").absoluteString, "-o", output, "-x", "4", "--fixed"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
            #expect(result.stdout.contains("5.0 MiB in"))
            #expect(result.stdout.contains("sha-256 \(content.sha256)"))
            #expect(server.requests.count >= 4)
        }

        @Test("-q prints nothing on success")
        func quiet() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 1000, seed: 52)), at: "/q")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/q").absoluteString, "-o", scratch.file("q").path, "-q"])
            #expect(result.status == 0)
            #expect(result.stdout.isEmpty && result.stderr.isEmpty)
        }

        @Test("An HTTP error exits 2 with a one-line error")
        func failure() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/nope").absoluteString, "-o", scratch.file("x").path])
            #expect(result.status == 2)
            #expect(result.stderr.hasPrefix("haul: ") && result.stderr.contains("404"))
            #expect(result.stderr.split(separator: "\n").count == 1)
            #expect(scratch.contents.isEmpty)
        }

        @Test("Bad arguments exit with the usage code and say what is wrong", arguments: [
            (["get", "ftp://host/file", "-o", "x"], "not an http or https URL"),
            (["get", "http://127.0.0.1/x", "-o", "x", "-x", "0"], "--connections must be between 1 and 64"),
            (["get", "http://127.0.0.1/x", "--timeout", "0"], "--timeout must be positive"),
            (["get", "http://127.0.0.1/x", "-o", "x", "-k", "lots"], "lots"),
        ])
        func badArguments(arguments: [String], message: String) throws {
            let result = try runHaul(arguments)
            #expect(result.status == 64)
            #expect(result.stderr.contains(message), "stderr: \(result.stderr)")
        }

        @Test("--sha256 / --checksum / --checksum-file: verified, or exit 3 with expected and actual")
        func checksums() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 93)
            server.serve(ServedFile(content: content), at: "/pkg.tar")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/pkg.tar").absoluteString
            let good = try runHaul(["get", url, "-o", scratch.file("a").path, "--sha256", content.sha256])
            #expect(good.status == 0, "\(good.stderr)")
            #expect(good.stdout.contains("sha-256 \(content.sha256) (verified)"))

            let wrong = String(repeating: "1", count: 64)
            let bad = try runHaul(["get", url, "-o", scratch.file("b").path, "--checksum", "sha-256=\(wrong)"])
            #expect(bad.status == 3)
            #expect(bad.stderr.contains(wrong) && bad.stderr.contains(content.sha256))
            #expect(!FileManager.default.fileExists(atPath: scratch.file("b").path))

            let sums = scratch.file("SHA256SUMS")
            try "\(wrong)  other.tar\n\(content.sha256) *pkg.tar\n".write(to: sums, atomically: true, encoding: .utf8)
            let listed = try runHaul(["get", url, "-o", scratch.file("pkg.tar").path, "--checksum-file", sums.path, "-q"])
            #expect(listed.status == 0, "\(listed.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("pkg.tar").path) == content.sha256)

            let malformed = try runHaul(["get", url, "-o", scratch.file("c").path, "--sha256", "xyz"])
            #expect(malformed.status == 64)
            #expect(scratch.contents.sorted() == ["SHA256SUMS", "a", "pkg.tar"])
        }

        @Test("--help lists the options and the exit codes")
        func help() throws {
            let result = try runHaul(["get", "--help"])
            #expect(result.status == 0)
            for word in ["--output", "--connections", "--min-split", "--quiet", "Exit codes"] {
                #expect(result.stdout.contains(word), "help lacks \(word)")
            }
        }
    }
}
