import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

/// SHA-256 of `content`'s bytes in `range`.
func sha256(of content: GeneratedContent, _ range: Range<Int64>) -> [UInt8] {
    var hash = SHA256()
    hash.update(content.bytes(range))
    return hash.finalize()
}

/// A metalink for `content` named `name`, served at `urls`, with pieces of `pieceLength`.
func metalinkFor(_ content: GeneratedContent, name: String, urls: [URL], pieceLength: Int64? = nil,
                 wholeHash: Metalink.Hash? = nil) throws -> Metalink {
    var pieces: Metalink.Pieces?
    if let pieceLength {
        var digests: [UInt8] = []
        var offset: Int64 = 0
        while offset < content.size {
            digests += sha256(of: content, offset..<min(content.size, offset + pieceLength))
            offset += pieceLength
        }
        pieces = .init(algorithm: .sha256, length: pieceLength, digests: digests)
    }
    let hash = wholeHash ?? Metalink.Hash(type: "sha-256", value: bytes(fromHex: content.sha256)!)
    return try Metalink(files: [.init(name: name, size: content.size, hashes: [hash], pieces: pieces,
                                      sources: urls.enumerated().map { .init(url: $1, priority: $0 + 1) })])
}

/// Every regular file under `directory`, relative.
func filesUnder(_ directory: URL) -> [String] {
    (FileManager.default.enumerator(atPath: directory.path)?.allObjects as? [String] ?? []).sorted()
}

extension Integration {
    @Suite("Metalink downloads")
    struct MetalinkDownloadTests {
        @Test("Three mirrors, a name with subdirectories: exact bytes inside the output directory")
        func threeMirrors() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 6 << 20, seed: 931)
            for server in servers { server.serve(ServedFile(content: content, etag: "\"v\""), at: "/f") }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let metalink = try metalinkFor(content, name: "dist/v1/file.bin", urls: servers.map { $0.url("/f") })
            let (location, _) = try await testSession(connections: 6).download(metalink: metalink, to: scratch.url)
            #expect(location.path == scratch.file("dist/v1/file.bin").path)
            #expect(try SHA256.hex(ofFileAt: scratch.file("dist/v1/file.bin").path) == content.sha256)
            #expect(filesUnder(scratch.url) == ["dist", "dist/v1", "dist/v1/file.bin"])
            for server in servers { await server.shutdown() }
        }

        @Test("Mirrors in the preferred location are asked first")
        func location() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 100_000, seed: 932)
            for server in servers { server.serve(ServedFile(content: content, etag: "\"v\""), at: "/f") }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let metalink = try Metalink(files: [.init(
                name: "f.bin", size: content.size, hashes: [.init(type: "sha-256", value: bytes(fromHex: content.sha256)!)],
                sources: [.init(url: servers[0].url("/f"), priority: 1, location: "us"),
                          .init(url: servers[1].url("/f"), priority: 2, location: "de")])])
            _ = try await testSession(connections: 1).download(metalink: metalink, to: scratch.url, preferringLocation: "DE")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == content.sha256)
            #expect(servers[1].requests.first?.range == "bytes=0-")
            #expect(servers[0].requests.isEmpty)
            for server in servers { await server.shutdown() }
        }

        @Test("A wrong whole-file hash: a clear error and nothing at the destination")
        func wrongWholeHash() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 3 << 20, seed: 933)
            server.serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let wrong = Metalink.Hash(type: "sha-256", value: Array(repeating: 0xab, count: 32))
            let metalink = try metalinkFor(content, name: "sub/f.bin", urls: [server.url("/f")], wholeHash: wrong)
            do {
                _ = try await testSession(connections: 4).download(metalink: metalink, to: scratch.url)
                Issue.record("a wrong hash was accepted")
            } catch let error as HaulError {
                guard case .checksumMismatch(let expected, let actual) = error else {
                    Issue.record("\(error)")
                    return
                }
                #expect(expected == String(repeating: "ab", count: 32))
                #expect(actual == content.sha256)
                #expect(error.description.contains("SHA-256 mismatch"))
            }
            // Nothing: no file, no partial file, no journal, and not the directory made for it.
            #expect(filesUnder(scratch.url).isEmpty)
            await server.shutdown()
        }

        @Test("A SHA-512-only metalink is verified with SHA-512 (right and wrong)")
        func sha512Only() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: (2 << 20) + 17, seed: 934)
            server.serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
            var hash = EVPHash(.sha512)
            content.bytes(0..<content.size).withUnsafeBytes { hash.update($0) }
            let digest = hash.digest()
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let good = try metalinkFor(content, name: "good.bin", urls: [server.url("/f")],
                                       wholeHash: .init(type: "sha-512", value: digest))
            let task = testSession(connections: 4).downloadTask(with: good, inDirectory: scratch.url)
            let events = task.events
            task.resume()
            for try await _ in events {}
            #expect(try SHA256.hex(ofFileAt: scratch.file("good.bin").path) == content.sha256)
            #expect(task.checksumSource == .metalink)
            var bad = digest
            bad[0] ^= 1
            let wrong = try metalinkFor(content, name: "bad.bin", urls: [server.url("/f")],
                                        wholeHash: .init(type: "sha-512", value: bad))
            await #expect(throws: HaulError.checksumMismatch(expected: bad.hexString, actual: digest.hexString)) {
                _ = try await testSession(connections: 4).download(metalink: wrong, to: scratch.url)
            }
            #expect(filesUnder(scratch.url) == ["good.bin"])
            await server.shutdown()
        }

        @Test("A symbolic link where the name's directory would be is refused, not followed")
        func linkInTheWay() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 10_000, seed: 935)
            server.serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let outside = Scratch()
            defer { outside.cleanup() }
            let out = scratch.file("out")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: out.appendingPathComponent("sub").path,
                                                       withDestinationPath: outside.url.path)
            let metalink = try metalinkFor(content, name: "sub/f.bin", urls: [server.url("/f")])
            do {
                _ = try await testSession().download(metalink: metalink, to: out)
                Issue.record("the link was followed")
            } catch {
                #expect("\(error)".contains("not followed"), "\(error)")
            }
            #expect(outside.contents.isEmpty)
            #expect(server.requests.isEmpty)
            await server.shutdown()
        }

        @Test("haul get FILE.meta4: the files land under -d; a hostile metalink writes nothing and exits 64")
        func command() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: (3 << 20) + 1, seed: 936)
            server.serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let metalinkPath = scratch.file("release.meta4")
            try metalinkFor(content, name: "pkg/f.bin", urls: [server.url("/f")], pieceLength: 1 << 20).xmlData()
                .write(to: metalinkPath)
            let out = scratch.file("out")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let result = try runHaul(["get", metalinkPath.path, "-d", out.path, "-x", "4"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: out.appendingPathComponent("pkg/f.bin").path) == content.sha256)
            #expect(result.stdout.contains("verified against the metalink"), "\(result.stdout)")
            // -d makes missing directories for metalinks too, and logs stay off standard output.
            let fresh = scratch.file("made/here")
            let again = try runHaul(["get", metalinkPath.path, "-d", fresh.path, "-x", "4", "-v"])
            #expect(again.status == 0, "stderr: \(again.stderr)")
            #expect(try SHA256.hex(ofFileAt: fresh.appendingPathComponent("pkg/f.bin").path) == content.sha256)
            #expect(!again.stdout.contains("info") && again.stderr.contains("haul: "), "\(again.stdout)")

            let hostile = String(decoding: try Data(contentsOf: metalinkPath), as: UTF8.self)
                .replacingOccurrences(of: "name=\"pkg/f.bin\"", with: "name=\"../escaped.bin\"")
            try Data(hostile.utf8).write(to: scratch.file("hostile.meta4"))
            let refused = try runHaul(["get", "--metalink", scratch.file("hostile.meta4").path, "-d", out.path])
            #expect(refused.status == 64)
            #expect(refused.stderr.contains("'..'"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: scratch.file("escaped.bin").path))
            await server.shutdown()
        }
    }
}

extension Integration.MetalinkDownloadTests {
    @Test("haul bench FILE.meta4 ranks the metalink's mirrors by speed, with location and priority")
    func bench() async throws {
        let servers = [try await TestServer.start(), try await TestServer.start()]
        let content = GeneratedContent(size: 16 << 20, seed: 937)
        for (server, rate) in zip(servers, [512 << 10, 4 << 20]) {
            server.serve(ServedFile(content: content, etag: "\"b\"", bytesPerSecond: rate), at: "/f")
        }
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let metalink = try Metalink(files: [.init(
            name: "f.bin", size: content.size, hashes: [.init(type: "sha-256", value: bytes(fromHex: content.sha256)!)],
            sources: [.init(url: servers[0].url("/f"), priority: 1, location: "de"),
                      .init(url: servers[1].url("/f"), priority: 2, location: "us")])])
        try metalink.xmlData().write(to: scratch.file("f.meta4"))
        let result = try runHaul(["bench", scratch.file("f.meta4").path, "--duration", "0.5", "-x", "2", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let mirrors = try #require(document["mirrors"] as? [[String: Any]])
        #expect(mirrors.compactMap { $0["url"] as? String } == [servers[1].url("/f").absoluteString, servers[0].url("/f").absoluteString])
        #expect(mirrors.compactMap { $0["location"] as? String } == ["us", "de"])
        #expect(mirrors.compactMap { $0["priority"] as? Int } == [2, 1])
        let table = try runHaul(["bench", scratch.file("f.meta4").path, "--duration", "0.3", "-x", "1"])
        #expect(table.status == 0)
        #expect(table.stdout.contains("location us, priority 2"), "\(table.stdout)")
        for server in servers { await server.shutdown() }
    }
}

extension Integration.MetalinkDownloadTests {
    @Test("Link: rel=duplicate mirrors join the download (no credentials sent to them); the switch turns it off")
    func linkMirrors() async throws {
        let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
        let content = GeneratedContent(size: 12 << 20, seed: 938)
        var primary = ServedFile(content: content, etag: "\"v\"", bytesPerSecond: 4 << 20)
        primary.extraHeaders = [("Link", "<\(servers[1].url("/f").absoluteString)>; rel=duplicate; pri=1"),
                                ("Link", "<\(servers[2].url("/f").absoluteString)>; rel=duplicate; pri=2")]
        servers[0].serve(primary, at: "/f")
        for server in servers.dropFirst() {
            server.serve(ServedFile(content: content, etag: "\"v\"", bytesPerSecond: 4 << 20), at: "/f")
        }
        for uses in [true, false] {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = 6
            configuration.syncsBeforeMove = false
            configuration.usesMirrorsFromLinkHeaders = uses
            let before = servers.map(\.bytesSent)
            var request = URLRequest(url: servers[0].url("/f"))
            request.setValue("Bearer secret", forHTTPHeaderField: "Authorization")
            _ = try await DownloadSession(configuration: configuration).download(for: request, to: scratch.file("f"))
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            let served = zip(servers.map(\.bytesSent), before).map { $0 - $1 }
            if uses {
                #expect(served[1] > 0 && served[2] > 0, "\(served)")
                for server in servers.dropFirst() {
                    #expect(server.requests.allSatisfy { $0.headers["authorization"] == nil })
                }
            } else {
                #expect(served[1] == 0 && served[2] == 0, "\(served)")
            }
        }
        #expect(servers[0].requests.allSatisfy { $0.headers["authorization"] == "Bearer secret" })
        for server in servers { await server.shutdown() }
    }
}

extension Integration.MetalinkDownloadTests {
    @Test("A background session refuses a metalink rather than download it unverified")
    func backgroundRefused() async throws {
        let content = GeneratedContent(size: 10, seed: 939)
        let metalink = try metalinkFor(content, name: "f.bin", urls: [URL(string: "http://127.0.0.1:9/f")!])
        let session = DownloadSession(configuration: .background(withIdentifier: "metalink-test"))
        let task = session.downloadTask(with: metalink)
        let events = task.events
        task.resume()
        do {
            for try await _ in events {}
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("cannot take a metalink"), "\(error)")
        }
    }
}

extension Integration.MetalinkDownloadTests {
    @Test("A failed download removes the empty directories it made, and only those")
    func failureRemovesMadeDirectories() async throws {
        let server = try await TestServer.start()
        let content = GeneratedContent(size: 1 << 20, seed: 940)
        server.serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        // `keep` was there before (empty), `other` holds a file another download left.
        try FileManager.default.createDirectory(at: scratch.file("keep"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: scratch.file("other"), withIntermediateDirectories: true)
        try Data("x".utf8).write(to: scratch.file("other/note"))
        let wrong = Metalink.Hash(type: "sha-256", value: Array(repeating: 0xcd, count: 32))
        for name in ["keep/a/b/f.bin", "new/a/b/f.bin", "other/f.bin"] {
            let metalink = try metalinkFor(content, name: name, urls: [server.url("/f")], wholeHash: wrong)
            await #expect(throws: HaulError.self) {
                _ = try await testSession(connections: 2).download(metalink: metalink, to: scratch.url)
            }
        }
        #expect(filesUnder(scratch.url) == ["keep", "other", "other/note"])
        // A file that lands stays with its directories.
        let good = try metalinkFor(content, name: "new/a/f.bin", urls: [server.url("/f")])
        _ = try await testSession(connections: 2).download(metalink: good, to: scratch.url)
        #expect(try SHA256.hex(ofFileAt: scratch.file("new/a/f.bin").path) == content.sha256)
        #expect(filesUnder(scratch.url) == ["keep", "new", "new/a", "new/a/f.bin", "other", "other/note"])
        await server.shutdown()
    }
}
