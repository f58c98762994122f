import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Testing

private func session(connections: Int = 4) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.syncsBeforeMove = false
    return DownloadSession(configuration: configuration)
}

/// Starts a slow download to `destination` and cancels it, leaving its partial file and journal.
private func interrupted(_ server: TestServer, path: String, to destination: URL) async throws -> Data {
    let download = Task { try await session().download(from: server.url(path), to: destination) }
    try await Task.sleep(for: .milliseconds(700))
    download.cancel()
    _ = try? await download.value
    return try #require(DownloadSession.journal(for: destination))
}

private func mode(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? Int) ?? -1
}

extension Integration {
    @Suite("Safety: confined writes, untrusted journals, secrets")
    struct SafetyTests {
        static let slow = ServedFile(content: GeneratedContent(size: 8 << 20, seed: 400), etag: "\"s\"",
                                     bytesPerSecond: 2 << 20)

        @Test("A forged journal pointing at another file never writes it; the download finishes exactly")
        func forgedJournal() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(Self.slow, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let victim = scratch.file("victim")
            try Data("precious".utf8).write(to: victim)
            let destination = scratch.file("out")
            var forged = try ResumeData(try await interrupted(server, path: "/f", to: destination))
            forged.tempFile.path = victim.path
            try forged.encoded().write(to: DownloadSession.journalURL(for: destination))
            let result = try runHaul(["get", server.url("/f").absoluteString, "-o", destination.path, "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
            #expect(try SHA256.hex(ofFileAt: destination.path) == Self.slow.content.sha256)
        }

        @Test("A journal edited to claim bytes that were never written costs a restart, not wrong bytes")
        func editedJournal() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(Self.slow, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            var forged = try ResumeData(try await interrupted(server, path: "/f", to: destination))
            forged.doneRanges = [0..<forged.length]
            forged.syncedRanges = forged.doneRanges
            // Its own checksum line is easy to recompute; the signature is not.
            try forged.encoded().write(to: DownloadSession.journalURL(for: destination))
            #expect(DownloadSession.journal(for: destination) == nil)
            let result = try runHaul(["get", server.url("/f").absoluteString, "-o", destination.path, "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: destination.path) == Self.slow.content.sha256)
        }

        @Test("A symbolic link planted as the partial file is not followed")
        func plantedSymlink() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 401)
            server.serve(ServedFile(content: content, etag: "\"p\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let victim = scratch.file("victim")
            try Data("precious".utf8).write(to: victim)
            try FileManager.default.createSymbolicLink(atPath: scratch.file(".out.haul-part").path, withDestinationPath: victim.path)
            _ = try await session().download(from: server.url("/f"), to: scratch.file("out"))
            #expect(try String(contentsOf: victim, encoding: .utf8) == "precious")
            let attributes = try FileManager.default.attributesOfItem(atPath: scratch.file("out").path)
            #expect(attributes[.type] as? FileAttributeType == .typeRegular)
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == content.sha256)
        }

        @Test("Partial files and journals are private (0600)")
        func privateModes() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(Self.slow, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            _ = try await interrupted(server, path: "/f", to: destination)
            #expect(mode(DownloadSession.journalURL(for: destination).path) == 0o600)
            #expect(mode(scratch.file(".out.haul-part").path) == 0o600)
        }

        @Test("A password in the URL reaches the server but never the journal or the output")
        func passwordStaysInMemory() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(Self.slow, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var parts = URLComponents(url: server.url("/f"), resolvingAgainstBaseURL: false)!
            parts.user = "user"
            parts.password = "PASSWORD"
            let url = parts.url!
            let destination = scratch.file("out")
            let download = Task { try await session().download(from: url, to: destination) }
            try await Task.sleep(for: .milliseconds(700))
            download.cancel()
            _ = try? await download.value
            let journal = try Data(contentsOf: DownloadSession.journalURL(for: destination))
            #expect(!String(decoding: journal, as: UTF8.self).contains("PASSWORD"))
            #expect(!String(decoding: journal, as: UTF8.self).contains(Data("user:PASSWORD".utf8).base64EncodedString()))
            #expect(server.requests.first?.headers["authorization"] == "Basic " + Data("user:PASSWORD".utf8).base64EncodedString())
            // The command line resumes with the password it was given, and prints none.
            let result = try runHaul(["get", url.absoluteString, "-o", destination.path, "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(!(result.stdout + result.stderr).contains("PASSWORD"))
            #expect(result.stdout.contains("resuming") || result.stdout.contains("\"finish\""))
            #expect(try SHA256.hex(ofFileAt: destination.path) == Self.slow.content.sha256)
        }

        @Test("Mirrors get no -H credentials unless --mirror-headers")
        func mirrorsGetNoCredentials() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 402)
            server.serve(ServedFile(content: content, etag: "\"m\""), at: "/a")
            server.serve(ServedFile(content: content, etag: "\"m\""), at: "/b")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/a").absoluteString, "--mirror", server.url("/b").absoluteString,
                                      "-o", scratch.file("out").path, "-H", "Authorization: Bearer SECRET", "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(server.requests.filter { $0.path == "/a" }.allSatisfy { $0.headers["authorization"] == "Bearer SECRET" })
            #expect(server.requests.filter { $0.path == "/b" }.allSatisfy { $0.headers["authorization"] == nil })
        }

        @Test("A server-chosen name never replaces a directory or a hidden file, even with --force")
        func serverNames() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 100_000, seed: 403)
            var toDirectory = ServedFile(content: content)
            toDirectory.extraHeaders = [("Content-Disposition", "attachment; filename=\"keep\"")]
            server.serve(toDirectory, at: "/one.bin")
            var toDotfile = ServedFile(content: content)
            toDotfile.extraHeaders = [("Content-Disposition", "attachment; filename=\".bashrc\"")]
            server.serve(toDotfile, at: "/two.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try FileManager.default.createDirectory(at: scratch.file("keep"), withIntermediateDirectories: false)
            try Data("inside".utf8).write(to: scratch.file("keep/inside"))
            try Data("alias ls=ls\n".utf8).write(to: scratch.file(".bashrc"))
            let result = try runHaul(["get", server.url("/one.bin").absoluteString, server.url("/two.bin").absoluteString,
                                      "-d", scratch.url.path, "--force", "--force-server-names", "-q"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try String(contentsOf: scratch.file("keep/inside"), encoding: .utf8) == "inside")
            #expect(try String(contentsOf: scratch.file(".bashrc"), encoding: .utf8) == "alias ls=ls\n")
            #expect(try SHA256.hex(ofFileAt: scratch.file("one.bin").path) == content.sha256)
            #expect(try SHA256.hex(ofFileAt: scratch.file("bashrc").path) == content.sha256)
        }

        @Test("Two downloads of one run with the same name get distinct names; both exact")
        func batchClash() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let first = GeneratedContent(size: 300_000, seed: 404)
            let second = GeneratedContent(size: 300_001, seed: 405)
            server.serve(ServedFile(content: first), at: "/a/f.bin")
            server.serve(ServedFile(content: second), at: "/b/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let result = try runHaul(["get", server.url("/a/f.bin").absoluteString, server.url("/b/f.bin").absoluteString,
                                      "-d", scratch.url.path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == first.sha256)
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.1.bin").path) == second.sha256)
            #expect((result.stdout + result.stderr).contains("f.1.bin"))
        }

        @Test("Something other than a regular file at the output is refused at once, even with --force")
        func nonRegularOutput() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 100_000, seed: 406)), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try FileManager.default.createDirectory(at: scratch.file("dir"), withIntermediateDirectories: false)
            try FileManager.default.createSymbolicLink(atPath: scratch.file("link").path, withDestinationPath: "/etc/hostname")
            for name in ["dir", "link"] {
                let result = try runHaul(["get", server.url("/f").absoluteString, "-o", scratch.file(name).path, "--force"])
                #expect(result.status == 4, "\(name): \(result.stderr)")
                #expect(result.stderr.contains("not a regular file"))
            }
            #expect(server.requests.isEmpty)
            // The library refuses too, before any byte is fetched.
            await #expect(throws: HaulError.notARegularFile(path: scratch.file("dir").path)) {
                _ = try await session().download(from: server.url("/f"), to: scratch.file("dir"))
            }
        }

        @Test("A server claiming more than the disk holds fails at once, says both sizes, leaves nothing")
        func insufficientSpace() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 1 << 50, seed: 407), etag: "\"big\""), at: "/huge")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            do {
                _ = try await session().download(from: server.url("/huge"), to: scratch.file("out"))
                Issue.record("a petabyte fit")
            } catch let error as HaulError {
                guard case .insufficientSpace(let path, let needed, let available) = error else {
                    Issue.record("wrong error \(error)")
                    return
                }
                #expect(path == scratch.file("out").path && needed == 1 << 50 && available < needed)
                #expect(error.description.contains("\(1 << 50)"))
            }
            #expect(scratch.contents.isEmpty, "left: \(scratch.contents)")
        }

        @Test("A download whose directory was moved resumes from the partial file beside it")
        func movedDirectory() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(Self.slow, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let before = scratch.file("a")
            try FileManager.default.createDirectory(at: before, withIntermediateDirectories: false)
            _ = try await interrupted(server, path: "/f", to: before.appendingPathComponent("out"))
            let after = scratch.file("b")
            try FileManager.default.moveItem(at: before, to: after)
            let sent = server.bytesSent
            let result = try runHaul(["get", server.url("/f").absoluteString, "-o", after.appendingPathComponent("out").path, "-c"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect((result.stdout + result.stderr).contains("resuming"), "\(result.stdout)")
            #expect(server.bytesSent - sent < Self.slow.content.size, "it started over")
            #expect(try SHA256.hex(ofFileAt: after.appendingPathComponent("out").path) == Self.slow.content.sha256)
        }

        @Test("A 250-byte file name works: the hidden side names are shortened to fit")
        func longName() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 408)
            server.serve(ServedFile(content: content, etag: "\"l\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let name = String(repeating: "é", count: 120) + "0123456789"
            #expect(name.utf8.count == 250)
            _ = try await session().download(from: server.url("/f"), to: scratch.file(name))
            #expect(try SHA256.hex(ofFileAt: scratch.file(name).path) == content.sha256)
            #expect(DownloadSession.journalURL(for: scratch.file(name)).lastPathComponent.utf8.count <= 251)
        }

        @Test("-c without a journal refuses and leaves the partial file alone")
        func continueWithoutJournal() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 100_000, seed: 409)), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try Data("half".utf8).write(to: scratch.file(".out.haul-part"))
            let result = try runHaul(["get", server.url("/f").absoluteString, "-o", scratch.file("out").path, "-c"])
            #expect(result.status == 4)
            #expect(result.stderr.contains("no journal"))
            #expect(try String(contentsOf: scratch.file(".out.haul-part"), encoding: .utf8) == "half")
            #expect(server.requests.isEmpty)
        }
    }
}
