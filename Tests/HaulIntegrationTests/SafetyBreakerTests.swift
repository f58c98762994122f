import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import Haul
import HaulTestServer
import Testing

private func breakerSession(connections: Int = 4) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.adaptsConnectionCount = false  // segments, even from a fast loopback server
    configuration.syncsBeforeMove = false
    return DownloadSession(configuration: configuration)
}

/// Starts a slow download to `destination` and cancels it, leaving its partial file and journal.
private func interruptedDownload(_ server: TestServer, path: String, to destination: URL) async throws {
    let download = Task { try await breakerSession().download(from: server.url(path), to: destination) }
    try await Task.sleep(for: .milliseconds(700))
    download.cancel()
    _ = try? await download.value
    #expect(DownloadSession.journal(for: destination) != nil, "no journal after cancelling")
}

/// Waits at most `seconds` for `haul`; kills it (by its own pid) if it is still running.
private func finish(_ running: RunningHaul, within seconds: Double) async -> (CommandResult, timedOut: Bool) {
    let deadline = Date().addingTimeInterval(seconds)
    while running.process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
    let timedOut = running.process.isRunning
    if timedOut { kill(running.process.processIdentifier, SIGKILL) }
    return (await running.finish(), timedOut)
}

private func isSymbolicLink(_ path: String) -> Bool {
    var info = stat()
    return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK
}

private func secretURL(_ url: URL) -> URL {
    var parts = URLComponents(url: url, resolvingAgainstBaseURL: false)!
    parts.user = "user"
    parts.password = "SECRETPW"
    return parts.url!
}

extension Integration {
    @Suite("Safety breaker")
    struct SafetyBreakerTests {
        static let slow = ServedFile(content: GeneratedContent(size: 8 << 20, seed: 500), etag: "\"b\"",
                                     bytesPerSecond: 2 << 20)

        // MARK: The final rename

        @Test("A partial file swapped for another file or a link during the download is never published as the result")
        func partialSwappedBeforeRename() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 501)
            server.serve(ServedFile(content: content, etag: "\"w\"", bytesPerSecond: 2 << 20), at: "/f")
            for swapIn in ["file", "link"] {
                let scratch = Scratch()
                defer { scratch.cleanup() }
                let victim = scratch.file("victim")
                try Data("precious".utf8).write(to: victim)
                let destination = scratch.file("out")
                let part = scratch.file(".out.haul-part").path
                let download = Task {
                    try await breakerSession(connections: 1).download(for: URLRequest(url: server.url("/f")), to: destination,
                                                                      expectedSHA256: content.sha256)
                }
                try await Task.sleep(for: .milliseconds(500))
                #expect(unlink(part) == 0, "no partial file to swap")
                if swapIn == "file" {
                    try Data("forged bytes".utf8).write(to: URL(fileURLWithPath: part))
                } else {
                    try FileManager.default.createSymbolicLink(atPath: part, withDestinationPath: victim.path)
                }
                let outcome = await download.result
                #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
                #expect(!isSymbolicLink(destination.path), "\(swapIn): the destination became a symbolic link")
                if case .success = outcome {
                    // Success (and a verified SHA-256) must mean the destination holds those bytes.
                    #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256,
                            "\(swapIn): success reported, but the destination is not the downloaded file")
                }
            }
        }

        // MARK: Planted things beside the destination

        @Test("A fifo planted as the journal does not hang haul get")
        func fifoAsJournal() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 200_000, seed: 502)
            server.serve(ServedFile(content: content, etag: "\"q\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            #expect(mkfifo(scratch.file(".out.haul-journal").path, 0o600) == 0)
            let running = try RunningHaul(["get", server.url("/f").absoluteString, "-o", scratch.file("out").path, "-q"])
            let (result, timedOut) = await finish(running, within: 8)
            #expect(!timedOut, "haul get hung opening a fifo planted as the journal")
            #expect(result.status == 0, "\(result.stderr)")
            #expect((try? SHA256.hex(ofFileAt: scratch.file("out").path)) == content.sha256)
        }

        @Test("-c whose partial file was replaced refuses with a local exit status (4), not a network one")
        func continueWithReplacedPartial() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(Self.slow, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            try await interruptedDownload(server, path: "/f", to: destination)
            let part = scratch.file(".out.haul-part")
            #expect(unlink(part.path) == 0)
            try Data(repeating: 7, count: 9 << 20).write(to: part)
            let before = server.requests.count
            let result = try runHaul(["get", server.url("/f").absoluteString, "-o", destination.path, "-c"])
            #expect(result.status == 4, "exit \(result.status): \(result.stderr)")
            #expect(result.stderr.contains("replaced"), "\(result.stderr)")
            #expect(server.requests.count == before)
        }

        @Test("A journal that cannot be written is not reported as saved, and leaves no partial file that cannot resume")
        func unwritableJournalOnInterrupt() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(Self.slow, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            // Someone who can write the directory blocks the journal's side name.
            try FileManager.default.createDirectory(at: scratch.file(".out.haul-journal.new"), withIntermediateDirectories: false)
            try Data("x".utf8).write(to: scratch.file(".out.haul-journal.new/keep"))
            let running = try RunningHaul(["get", server.url("/f").absoluteString, "-o", destination.path, "-x", "2"])
            try await Task.sleep(for: .milliseconds(1200))
            kill(running.process.processIdentifier, SIGINT)
            let (result, timedOut) = await finish(running, within: 8)
            #expect(!timedOut)
            #expect(result.status == 130, "\(result.stderr)")
            let saved = DownloadSession.journal(for: destination) != nil
            if !saved {
                #expect(!result.stderr.contains("journal is saved"), "claims a journal that is not there: \(result.stderr)")
                #expect(!FileManager.default.fileExists(atPath: scratch.file(".out.haul-part").path),
                        "a partial file without a journal is left behind")
            }
        }

        // MARK: Names within one run

        @Test("A server's Content-Disposition name never takes the name another download of the run reserved")
        func serverNameTakesReservedName() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let first = GeneratedContent(size: 100_000, seed: 503)
            let second = GeneratedContent(size: 3 << 20, seed: 504)
            var named = ServedFile(content: first)
            named.extraHeaders = [("Content-Disposition", "attachment; filename=\"b.bin\"")]
            server.serve(named, at: "/a.bin")
            server.serve(ServedFile(content: second, etag: "\"b\"", bytesPerSecond: 2 << 20), at: "/b.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/a.bin").absoluteString, server.url("/b.bin").absoluteString,
                                      "-d", scratch.url.path, "-x", "1", "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("b.bin").path) == second.sha256, "b.bin: \(scratch.contents)")
            let kept = scratch.contents.filter { !$0.hasPrefix(".") && $0 != "b.bin" }
            #expect(kept.count == 1, "\(scratch.contents)")
            if let name = kept.first { #expect(try SHA256.hex(ofFileAt: scratch.file(name).path) == first.sha256) }
        }

        @Test("--force-server-names never lets one download's server name replace another download of the same run")
        func serverNameReplacesSiblingDownload() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let first = GeneratedContent(size: 3 << 20, seed: 505)
            let second = GeneratedContent(size: 100_000, seed: 506)
            var named = ServedFile(content: first, etag: "\"a\"", bytesPerSecond: 2 << 20)
            named.extraHeaders = [("Content-Disposition", "attachment; filename=\"b.bin\"")]
            server.serve(named, at: "/a.bin")
            server.serve(ServedFile(content: second), at: "/b.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/a.bin").absoluteString, server.url("/b.bin").absoluteString,
                                      "-d", scratch.url.path, "-x", "1", "--force-server-names", "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("b.bin").path) == second.sha256,
                    "the second download's b.bin was replaced by the first's server name: \(scratch.contents)")
            let others = scratch.contents.filter { !$0.hasPrefix(".") && $0 != "b.bin" }
            #expect(others.count == 1, "the first download's file is gone: \(scratch.contents)")
        }

        // MARK: Secrets

        @Test("haul bench never prints a password from the URL (table or JSON)")
        func benchHidesPassword() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 1 << 20, seed: 507), etag: "\"h\""), at: "/f")
            let url = secretURL(server.url("/f")).absoluteString
            for extra in [[], ["--json"]] {
                let result = try runHaul(["bench", url, "--duration", "0.3", "--bytes", "256K", "-x", "2"] + extra)
                #expect(result.status == 0, "\(result.stderr)")
                #expect(!(result.stdout + result.stderr).contains("SECRETPW"), "\(extra): \(result.stdout)")
            }
        }

        @Test("--mirror-select fastest never prints a mirror's password")
        func fastestMirrorHidesPassword() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 508)
            server.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: 512 << 10), at: "/slow")
            server.serve(ServedFile(content: content, etag: "\"m\""), at: "/fast")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/slow").absoluteString,
                                      "--mirror", secretURL(server.url("/fast")).absoluteString,
                                      "--mirror-select", "fastest", "-o", scratch.file("out").path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(!(result.stdout + result.stderr).contains("SECRETPW"), "\(result.stderr)")
        }

        @Test("A rejected URL from -i or --mirror is not echoed with its password")
        func rejectedURLHidesPassword() throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let list = scratch.file("urls.txt")
            try Data("ftp://user:SECRETPW@127.0.0.1/x\n".utf8).write(to: list)
            let fromFile = try runHaul(["get", "-i", list.path, "-d", scratch.url.path])
            #expect(fromFile.status == 64)
            #expect(!(fromFile.stdout + fromFile.stderr).contains("SECRETPW"), "\(fromFile.stderr)")
            let mirror = try runHaul(["get", "http://127.0.0.1:9/x", "--mirror", "ftp://user:SECRETPW@127.0.0.1/x",
                                      "-o", scratch.file("out").path])
            #expect(mirror.status == 64)
            #expect(!(mirror.stdout + mirror.stderr).contains("SECRETPW"), "\(mirror.stderr)")
        }

        @Test("Range requests after a redirect to another port (another origin) carry no -H credentials")
        func redirectToOtherPortDropsCredentials() async throws {
            let target = try await TestServer.start()
            defer { Task { await target.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 509)
            target.serve(ServedFile(content: content, etag: "\"r\""), at: "/f")
            let json = """
            {"versions": [{"seed": 1, "size": 10}], "paths": [],
             "rules": [{"then": {"status": 302, "headers": {"Location": "\(target.url("/f").absoluteString)"}}}]}
            """
            let behaviour = try JSONDecoder().decode(ScenarioBehaviour.self, from: Data(json.utf8))
            let redirector = try await ScenarioServer.start(behaviour)
            defer { Task { await redirector.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", redirector.url("/f").absoluteString, "-o", scratch.file("out").path,
                                      "-H", "Authorization: Bearer SECRETPW", "-H", "Cookie: c=SECRETPW", "-x", "4",
                                      "--fixed", "-k", "512K", "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == content.sha256)
            #expect(target.requests.count > 1, "no range requests went to the redirect's target")
            for request in target.requests {
                #expect(request.headers["authorization"] == nil, "\(request.range ?? "whole"): \(request.headers)")
                #expect(request.headers["cookie"] == nil, "\(request.range ?? "whole"): \(request.headers)")
            }
        }
    }
}
