import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

/// A session for these attacks: adaptive unless told, quick retries, a 5 s stall timeout.
private func adaptiveSession(connections: Int = 8, minimumSplit: Int64 = 256 << 10, retries: Int = 8,
                             rate: Int64 = 0, adaptive: Bool = true) -> DownloadSession {
    testSession(connections: connections, minimumSplit: minimumSplit, retries: retries, stallSeconds: 5,
                adaptive: adaptive, rate: rate)
}

/// A server of `/f` whose `Link` names a metalink, `/slow.meta4`, that sends 10 bytes and
/// then nothing.
private func fileWithSilentMetalink(size: Int64, seed: UInt64) async throws -> (TestServer, GeneratedContent) {
    let server = try await TestServer.start()
    let content = GeneratedContent(size: size, seed: seed)
    var file = ServedFile(content: content, etag: "\"n\"")
    file.extraHeaders = [("Link", "</slow.meta4>; rel=describedby; type=\"\(meta4Type)\"")]
    server.serve(file, at: "/f")
    server.serve(ServedFile(content: GeneratedContent(size: 4096, seed: 1), faults: [Fault(.stallAfter(bytes: 10), times: 100)]),
                 at: "/slow.meta4")
    return (server, content)
}

/// Two servers of one 8 MiB file, the second (a caller's mirror without validators) with bytes
/// that differ around every MiB boundary ± 3000, both at 2 MiB/s per connection.
private func mirrorDifferingAroundMiBs() async throws -> (servers: [TestServer], content: GeneratedContent) {
    let servers = [try await TestServer.start(), try await TestServer.start()]
    let content = GeneratedContent(size: 8 << 20, seed: 7111)
    let patches = (1..<8).map { GeneratedContent.Patch(from: Int64($0) << 20 - 3000, to: Int64($0) << 20 + 3000, seed: 9) }
    let lying = GeneratedContent(size: content.size, seed: 7111, patches: patches)
    servers[0].serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/f")
    servers[1].serve(ServedFile(content: lying, bytesPerSecond: 2 << 20), at: "/f")
    return (servers, content)
}

/// Runs `task` to its end (events drained) and returns it.
private func run(_ task: DownloadTask) async throws -> DownloadTask {
    let events = task.events
    task.resume()
    do { for try await _ in events {} } catch {}
    return task
}

/// Fails the test if `body` takes longer than `limit`.
private func bounded<T: Sendable>(_ limit: Duration, _ what: String,
                                  _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try? await Task.sleep(for: limit)
            return nil
        }
        guard let first = try await group.next(), let value = first else {
            group.cancelAll()
            throw BreakerTimeout(what: what, limit: limit)
        }
        group.cancelAll()
        return value
    }
}

private struct BreakerTimeout: Error, CustomStringConvertible {
    var what: String
    var limit: Duration
    var description: String { "\(what) did not end within \(limit)" }
}

/// The file at `url` is byte-exact `content`, or there is no file there.
private func exactOrAbsent(_ url: URL, _ content: GeneratedContent, sourceLocation: SourceLocation = #_sourceLocation) throws {
    guard FileManager.default.fileExists(atPath: url.path) else { return }
    #expect(try SHA256.hex(ofFileAt: url.path) == content.sha256, "a file that is not the served one at the destination",
            sourceLocation: sourceLocation)
}

private let meta4Type = "application/metalink4+xml"

extension Integration {
    @Suite("Breaking adaptive connections and Metalink/HTTP")
    struct BreakerAdaptiveTests {
        // MARK: Adaptive connection count, chunks

        @Test("Adaptive, tiny files around the minimum split: exact bytes, nothing left behind")
        func tinyFiles() async throws {
            let split: Int64 = 4096
            let sizes: [Int64] = [0, 1, 2, split - 1, split, split + 1, 2 * split - 1, 2 * split, 2 * split + 1, 3 * split + 7, 64 * split + 3]
            for size in sizes {
                let content = GeneratedContent(size: size, seed: 7000 + UInt64(size))
                for rate in [nil, 64 << 10] as [Int?] {
                    try await bounded(.seconds(10), "size \(size) rate \(String(describing: rate))") {
                        _ = try await downloadAndVerify(ServedFile(content: content, etag: "\"t\"", bytesPerSecond: rate),
                                                        session: adaptiveSession(connections: 8, minimumSplit: split))
                    }
                }
            }
        }

        @Test("Adaptive: extra connections are refused (503, resets) only after the governor grows")
        func refusesAfterGrowth() async throws {
            let content = GeneratedContent(size: 8 << 20, seed: 7101)
            var file = ServedFile(content: content, etag: "\"r\"", bytesPerSecond: 2 << 20)
            file.faults = [Fault(.status(503, retryAfter: nil), times: 5, minimumOffset: 1),
                           Fault(.resetAfter(bytes: 70_000), times: 4, minimumOffset: 1),
                           Fault(.status(503, retryAfter: 1), times: 2, minimumOffset: 1)]
            let served = file
            try await bounded(.seconds(20), "download") {
                let (server, _) = try await downloadAndVerify(served, session: adaptiveSession())
                #expect(Set(server.requests.map(\.connection)).count > 1)
            }
        }

        @Test("Adaptive: a server that lies in Content-Range on later chunks never gets spliced in")
        func liesInLaterChunks() async throws {
            let content = GeneratedContent(size: 6 << 20, seed: 7102)
            var file = ServedFile(content: content, etag: "\"l\"", bytesPerSecond: 2 << 20)
            file.faults = [Fault(.wrongContentRange, times: 3, minimumOffset: 1 << 20)]
            let server = try await TestServer.start()
            server.serve(file, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try await bounded(.seconds(20), "download") {
                do {
                    _ = try await adaptiveSession().download(from: server.url("/f"), to: scratch.file("f"))
                    #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
                } catch {
                    try exactOrAbsent(scratch.file("f"), content)
                }
            }
            await server.shutdown()
        }

        @Test("Adaptive: the speed per connection changes twice mid-download; exact bytes, bounded time")
        func speedChanges() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 12 << 20, seed: 7103)
            server.serve(ServedFile(content: content, etag: "\"s\"", bytesPerSecond: 1 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let changer = Task {
                try await Task.sleep(for: .milliseconds(400))
                server.serve(ServedFile(content: content, etag: "\"s\""), at: "/f")
                try await Task.sleep(for: .milliseconds(200))
                server.serve(ServedFile(content: content, etag: "\"s\"", bytesPerSecond: 3 << 20), at: "/f")
            }
            try await bounded(.seconds(15), "download") {
                _ = try await adaptiveSession().download(from: server.url("/f"), to: scratch.file("f"))
            }
            changer.cancel()
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            await server.shutdown()
        }

        @Test("Adaptive under a rate limit (more connections never help, so they are shed): the hash is right with parked segments")
        func rateLimitParksAndHashes() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 10 << 20, seed: 7104)
            server.serve(ServedFile(content: content, etag: "\"h\"", bytesPerSecond: 6 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = adaptiveSession(rate: 8 << 20)
            try await bounded(.seconds(15), "download") {
                _ = try await session.download(for: URLRequest(url: server.url("/f")), to: scratch.file("f"),
                                               expectedSHA256: content.sha256)
            }
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            #expect(scratch.contents == ["f"])
            await server.shutdown()
        }

        @Test("Adaptive: the file changes (new ETag) while connections are shed: one whole version or a clear error")
        func changesWhileShedding() async throws {
            let server = try await TestServer.start()
            let old = GeneratedContent(size: 10 << 20, seed: 7105)
            let new = GeneratedContent(size: 10 << 20, seed: 7106)
            server.serve(ServedFile(content: old, etag: "\"old\"", bytesPerSecond: 6 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let changer = Task {
                try await Task.sleep(for: .milliseconds(450))
                server.serve(ServedFile(content: new, etag: "\"new\"", bytesPerSecond: 6 << 20), at: "/f")
            }
            try await bounded(.seconds(20), "download") {
                do {
                    _ = try await adaptiveSession(rate: 8 << 20).download(from: server.url("/f"), to: scratch.file("f"))
                    let digest = try SHA256.hex(ofFileAt: scratch.file("f").path)
                    #expect(digest == new.sha256, "neither whole version: \(digest == old.sha256 ? "old" : "mixed")")
                } catch {
                    #expect(!FileManager.default.fileExists(atPath: scratch.file("f").path))
                }
            }
            _ = try? await changer.value
            await server.shutdown()
        }

        @Test("Adaptive: cancel with resume data while chunks are pending or parked, then resume: exact bytes")
        func cancelAndResumeWhileChunked() async throws {
            let content = GeneratedContent(size: 16 << 20, seed: 7107)
            for (index, delay) in [120, 260, 450, 800].enumerated() {
                let server = try await TestServer.start()
                server.serve(ServedFile(content: content, etag: "\"c\"", bytesPerSecond: 3 << 20), at: "/f")
                let scratch = Scratch()
                defer { scratch.cleanup() }
                // Half the runs also under a rate limit, so shedding parks segments.
                let session = adaptiveSession(rate: index % 2 == 1 ? Int64(12 << 20) : 0)
                let task = session.downloadTask(with: URLRequest(url: server.url("/f")), to: scratch.file("f"))
                task.resume()
                try await Task.sleep(for: .milliseconds(delay))
                let data = try await bounded(.seconds(5), "cancel at \(delay) ms") { await task.cancelByProducingResumeData() }
                guard let data else {
                    // It may have finished already.
                    #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256, "at \(delay) ms")
                    await server.shutdown()
                    continue
                }
                let before = server.requests.count
                try await bounded(.seconds(10), "resume at \(delay) ms") {
                    _ = try await session.download(resumeFrom: data, to: scratch.file("f"))
                }
                #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256, "at \(delay) ms")
                #expect(scratch.contents == ["f"], "at \(delay) ms: \(scratch.contents)")
                // Resume fetches what was missing, not the whole file again (seams and chunks
                // cut short cost a little more).
                let resent = server.sentRanges(from: before).reduce(Int64(0)) { $0 + Int64($1.count) }
                #expect(resent < content.size + content.size / 8, "at \(delay) ms resent \(resent)")
                await server.shutdown()
            }
        }

        @Test("Adaptive: suspend during the governor's trial, resume later: exact bytes")
        func suspendDuringTrial() async throws {
            let content = GeneratedContent(size: 8 << 20, seed: 7108)
            for delay in [30, 150, 250] {
                let server = try await TestServer.start()
                server.serve(ServedFile(content: content, etag: "\"p\"", bytesPerSecond: 2 << 20), at: "/f")
                let scratch = Scratch()
                defer { scratch.cleanup() }
                let task = adaptiveSession().downloadTask(with: URLRequest(url: server.url("/f")), to: scratch.file("f"))
                let events = task.events
                task.resume()
                let waiter = Task { do { for try await _ in events {} } catch {} }
                try await Task.sleep(for: .milliseconds(delay))
                task.suspend()
                try await Task.sleep(for: .milliseconds(400))
                task.resume()
                try await bounded(.seconds(10), "suspended at \(delay) ms") { await waiter.value }
                #expect(task.error == nil, "at \(delay) ms: \(String(describing: task.error))")
                #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256, "at \(delay) ms")
                await server.shutdown()
            }
        }

        @Test("Adaptive with mirrors: a mirror without validators serving another file never splices")
        func mirrorServesOtherFile() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 8 << 20, seed: 7109)
            let other = GeneratedContent(size: 8 << 20, seed: 7110)
            servers[0].serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/f")
            servers[1].serve(ServedFile(content: other, bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let task = adaptiveSession().downloadTask(with: URLRequest(url: servers[0].url("/f")), to: scratch.file("f"))
            task.mirrors = [servers[1].url("/f")]
            try await bounded(.seconds(20), "download") { _ = try await run(task) }
            try exactOrAbsent(scratch.file("f"), content)
            if task.error != nil { #expect(!FileManager.default.fileExists(atPath: scratch.file("f").path)) }
            for server in servers { await server.shutdown() }
        }

        @Test("Mirrors, one differs in a few bytes mid-file (no validators), with the expected SHA-256: exact bytes or an error, adaptive or fixed")
        func mirrorDiffersMidFile() async throws {
            let (servers, content) = try await mirrorDifferingAroundMiBs()
            let scratch = Scratch()
            defer { scratch.cleanup() }
            for adaptive in [true, false] {
                let out = scratch.file("f\(adaptive)")
                let task = adaptiveSession(adaptive: adaptive).downloadTask(with: URLRequest(url: servers[0].url("/f")), to: out)
                task.mirrors = [servers[1].url("/f")]
                task.expectedSHA256 = content.sha256
                try await bounded(.seconds(20), "download") { _ = try await run(task) }
                let exists = FileManager.default.fileExists(atPath: out.path)
                #expect(task.error != nil || exists)
                try exactOrAbsent(out, content)
            }
            for server in servers { await server.shutdown() }
        }

        @Test("Mirrors, one differs mid-chunk, no validators and no digest: the mirror is not used, the bytes are the URL's (adaptive or fixed)")
        func mirrorDiffersMidFileNoDigest() async throws {
            let (servers, content) = try await mirrorDifferingAroundMiBs()
            let scratch = Scratch()
            defer { scratch.cleanup() }
            for adaptive in [true, false] {
                let out = scratch.file("f\(adaptive)")
                let task = adaptiveSession(adaptive: adaptive).downloadTask(with: URLRequest(url: servers[0].url("/f")), to: out)
                task.mirrors = [servers[1].url("/f")]
                try await bounded(.seconds(20), "download") { _ = try await run(task) }
                #expect(task.error == nil, "adaptive \(adaptive): \(String(describing: task.error))")
                #expect(try SHA256.hex(ofFileAt: out.path) == content.sha256, "adaptive \(adaptive): not the URL's file")
            }
            for server in servers { await server.shutdown() }
        }

        @Test("A mirror that shares no validator serves once a checksum is given, or when both name the same Last-Modified")
        func untiedMirrorServesWithChecksum() async throws {
            let content = GeneratedContent(size: 8 << 20, seed: 7113)
            let stamp = "Mon, 02 Nov 2026 10:00:00 GMT"
            // (the mirror's Last-Modified, the first source's, the expected SHA-256, whether the mirror serves)
            let cases: [(String?, String?, String?, Bool)] = [(nil, nil, nil, false), (nil, nil, content.sha256, true),
                                                              (stamp, stamp, nil, true), (stamp, nil, nil, false)]
            for (mirrorStamp, firstStamp, digest, serves) in cases {
                let servers = [try await TestServer.start(), try await TestServer.start()]
                servers[0].serve(ServedFile(content: content, lastModified: firstStamp, bytesPerSecond: 2 << 20), at: "/f")
                servers[1].serve(ServedFile(content: content, lastModified: mirrorStamp, bytesPerSecond: 2 << 20), at: "/f")
                let scratch = Scratch()
                defer { scratch.cleanup() }
                let task = adaptiveSession().downloadTask(with: URLRequest(url: servers[0].url("/f")), to: scratch.file("f"))
                task.mirrors = [servers[1].url("/f")]
                task.expectedSHA256 = digest
                try await bounded(.seconds(20), "download") { _ = try await run(task) }
                let label = "mirror \(mirrorStamp ?? "-"), first \(firstStamp ?? "-"), digest \(digest != nil)"
                #expect(task.error == nil, "\(label): \(String(describing: task.error))")
                #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256, "\(label)")
                if serves {
                    #expect(servers[1].bytesSent > 1 << 20, "\(label): the mirror sent \(servers[1].bytesSent)")
                } else {
                    #expect(servers[1].bytesSent < 1 << 20, "\(label): the mirror sent \(servers[1].bytesSent)")
                }
                for server in servers { await server.shutdown() }
            }
        }

        @Test("haul get (adaptive default) and --fixed against a per-connection-limited server with resets: exit 0 only with exact bytes")
        func cliAdaptiveAndFixed() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 6 << 20, seed: 7112)
            var file = ServedFile(content: content, etag: "\"x\"", bytesPerSecond: 3 << 20)
            file.faults = [Fault(.resetAfter(bytes: 40_000), times: 3, minimumOffset: 1)]
            server.serve(file, at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            for extra in [[], ["--fixed"]] {
                let out = scratch.file("f\(extra.count)")
                let result = try runHaul(["get", server.url("/f").absoluteString, "-o", out.path, "-x", "6", "-q"] + extra)
                #expect(result.status == 0, "\(extra): \(result.stderr)")
                if result.status == 0 { #expect(try SHA256.hex(ofFileAt: out.path) == content.sha256, "\(extra)") }
            }
            await server.shutdown()
        }

        // MARK: Metalink/HTTP

        @Test("rel=describedby that is huge, names file://, or 404s: a plain download with exact bytes")
        func describedByIgnoredCases() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 3 << 20, seed: 7201)
            server.serve(document: String(repeating: "<x>", count: (5 << 20) / 3), contentType: meta4Type, at: "/huge.meta4")
            let links = ["</huge.meta4>; rel=describedby; type=\"\(meta4Type)\"",
                         "<file:///etc/hostname>; rel=describedby; type=\"\(meta4Type)\"",
                         "</missing.meta4>; rel=describedby; type=\"\(meta4Type)\"",
                         "<http://127.0.0.1:1/x.meta4>; rel=describedby; type=\"\(meta4Type)\""]
            for link in links {
                var file = ServedFile(content: content, etag: "\"d\"")
                file.extraHeaders = [("Link", link)]
                server.serve(file, at: "/f")
                let scratch = Scratch()
                defer { scratch.cleanup() }
                try await bounded(.seconds(10), link) {
                    _ = try await adaptiveSession().download(from: server.url("/f"), to: scratch.file("f"))
                }
                #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256, "\(link)")
                #expect(scratch.contents == ["f"], "\(link)")
            }
            await server.shutdown()
        }

        @Test("rel=describedby that never answers: cancelling while it is awaited is prompt and resumable")
        func describedByNeverAnswersCancel() async throws {
            let (server, content) = try await fileWithSilentMetalink(size: 2 << 20, seed: 7202)
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = adaptiveSession()
            let task = session.downloadTask(with: URLRequest(url: server.url("/f")), to: scratch.file("f"))
            task.resume()
            try await Task.sleep(for: .milliseconds(700))
            let data = try await bounded(.seconds(3), "cancel") { await task.cancelByProducingResumeData() }
            #expect(!FileManager.default.fileExists(atPath: scratch.file("f").path), "finished before its metalink was judged")
            let blob = try #require(data)
            // Resume: the metalink is asked again (and still stalls); no corrupt result.
            let resumed = session.downloadTask(withResumeData: blob, to: scratch.file("f"))
            resumed.resume()
            try await Task.sleep(for: .milliseconds(300))
            resumed.cancel()
            try exactOrAbsent(scratch.file("f"), content)
            await server.shutdown()
        }

        @Test("rel=describedby that never answers: a small download ends once the stall timeout gives up on it, with exact bytes")
        func describedByNeverAnswersDelay() async throws {
            let (server, content) = try await fileWithSilentMetalink(size: 64 << 10, seed: 7203)
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let started = ContinuousClock.now
            _ = try await bounded(.seconds(30), "download") {
                try await adaptiveSession().download(from: server.url("/f"), to: scratch.file("f"))
            }
            let elapsed = ContinuousClock.now - started
            #expect(try SHA256.hex(ofFileAt: scratch.file("f").path) == content.sha256)
            // The session's stall timeout is 5 s; the metalink's own bound is 15 s (with the default
            // 30 s stall timeout, a 64 KiB download waits 15 s).
            #expect(elapsed < .seconds(8), "a 64 KiB download took \(elapsed) waiting for a metalink that never answers")
            await server.shutdown()
        }

        @Test("rel=describedby naming ../ and absolute names for same-size files: no file outside, exact bytes")
        func describedByTraversalNames() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 1 << 20, seed: 7204)
            let hash = Metalink.Hash(type: "sha-256", value: bytes(fromHex: content.sha256)!)
            for name in ["../f", "/tmp/f", "a/../../f", "f/../../f"] {
                let xml = """
                <?xml version="1.0" encoding="UTF-8"?>
                <metalink xmlns="urn:ietf:params:xml:ns:metalink">
                <file name="\(name)"><size>\(content.size)</size><hash type="sha-256">\(content.sha256)</hash>
                <url priority="1">\(server.url("/f").absoluteString)</url></file>
                <file name="g"><size>\(content.size)</size><hash type="sha-256">\(content.sha256)</hash>
                <url priority="1">\(server.url("/f").absoluteString)</url></file>
                </metalink>
                """
                _ = hash
                server.serve(document: xml, contentType: meta4Type, at: "/f.meta4")
                var file = ServedFile(content: content, etag: "\"t\"")
                file.extraHeaders = [("Link", "</f.meta4>; rel=describedby; type=\"\(meta4Type)\"")]
                server.serve(file, at: "/f")
                let parent = Scratch()
                defer { parent.cleanup() }
                let inner = parent.file("inner")
                try FileManager.default.createDirectory(at: inner, withIntermediateDirectories: true)
                try await bounded(.seconds(10), name) {
                    _ = try await adaptiveSession().download(from: server.url("/f"), to: inner.appendingPathComponent("f"))
                }
                #expect(try SHA256.hex(ofFileAt: inner.appendingPathComponent("f").path) == content.sha256, "\(name)")
                #expect(filesUnder(parent.url) == ["inner", "inner/f"], "\(name): \(filesUnder(parent.url))")
            }
            await server.shutdown()
        }

        @Test("rel=describedby listing a mirror that serves another file of the same size (no pieces): never spliced")
        func describedByMirrorOtherFile() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 6 << 20, seed: 7205)
            let other = GeneratedContent(size: 6 << 20, seed: 7206)
            var primary = ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 2 << 20)
            primary.extraHeaders = [("Link", "</f.meta4>; rel=describedby; type=\"\(meta4Type)\"")]
            servers[0].serve(primary, at: "/f")
            servers[1].serve(ServedFile(content: other, etag: "\"b\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            for withHash in [true, false] {
                let xml = """
                <?xml version="1.0" encoding="UTF-8"?>
                <metalink xmlns="urn:ietf:params:xml:ns:metalink">
                <file name="f.bin"><size>\(content.size)</size>\(withHash ? "<hash type=\"sha-256\">\(content.sha256)</hash>" : "<hash type=\"md5\">00000000000000000000000000000000</hash>")
                <url priority="1">\(servers[1].url("/f").absoluteString)</url>
                <url priority="2">\(servers[0].url("/f").absoluteString)</url></file>
                </metalink>
                """
                servers[0].serve(document: xml, contentType: meta4Type, at: "/f.meta4")
                let out = scratch.file("f\(withHash)")
                let task = adaptiveSession().downloadTask(with: URLRequest(url: servers[0].url("/f")), to: out)
                try await bounded(.seconds(20), "download") { _ = try await run(task) }
                try exactOrAbsent(out, content)
                #expect(task.error == nil || !FileManager.default.fileExists(atPath: out.path), "hash \(withHash)")
            }
            for server in servers { await server.shutdown() }
        }

        @Test("rel=duplicate mirror with an instance digest serving another version: exact bytes or a clear error, never the other version")
        func duplicateOtherVersion() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 6 << 20, seed: 7207)
            let other = GeneratedContent(size: 6 << 20, seed: 7208)
            var primary = ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 2 << 20)
            primary.extraHeaders = [("Link", "<\(servers[1].url("/f").absoluteString)>; rel=duplicate; pri=1"),
                                    ("Repr-Digest", "sha-256=:\(Data(bytes(fromHex: content.sha256)!).base64EncodedString()):")]
            servers[0].serve(primary, at: "/f")
            servers[1].serve(ServedFile(content: other, etag: "\"b\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            for adaptive in [true, false] {
                let out = scratch.file("f\(adaptive)")
                let task = adaptiveSession(adaptive: adaptive).downloadTask(with: URLRequest(url: servers[0].url("/f")), to: out)
                try await bounded(.seconds(20), "download") { _ = try await run(task) }
                try exactOrAbsent(out, content)
                #expect(task.error == nil || !FileManager.default.fileExists(atPath: out.path))
            }
            for server in servers { await server.shutdown() }
        }

        @Test("A failed metalink download whose made directories became symbolic links meanwhile: nothing is removed through them")
        func madeDirectoriesSwappedForLinks() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 3 << 20, seed: 7209)
            server.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: 2 << 20), at: "/f")
            let wrong = Metalink.Hash(type: "sha-256", value: Array(repeating: 0xcd, count: 32))
            for swapOuter in [false, true] {
                let scratch = Scratch()
                defer { scratch.cleanup() }
                let outside = Scratch()
                defer { outside.cleanup() }
                // What the links point at: empty directories named as the made ones, and a file.
                try FileManager.default.createDirectory(at: outside.file("b"), withIntermediateDirectories: true)
                try FileManager.default.createDirectory(at: outside.file("c"), withIntermediateDirectories: true)
                try Data("keep".utf8).write(to: outside.file("keep"))
                let metalink = try metalinkFor(content, name: "a/b/c/f.bin", urls: [server.url("/f")], wholeHash: wrong)
                // A download-wide limit keeps it running past the swap however many connections help.
                let task = adaptiveSession(rate: 2 << 20).downloadTask(with: metalink, inDirectory: scratch.url)
                let events = task.events
                task.resume()
                let waiter = Task { do { for try await _ in events {} } catch {} }
                try await Task.sleep(for: .milliseconds(400))
                let moved = scratch.file("moved")
                if swapOuter {
                    try FileManager.default.moveItem(at: scratch.file("a"), to: moved)
                    try FileManager.default.createSymbolicLink(at: scratch.file("a"), withDestinationURL: outside.url)
                } else {
                    try FileManager.default.moveItem(at: scratch.file("a/b"), to: moved)
                    try FileManager.default.createSymbolicLink(at: scratch.file("a/b"), withDestinationURL: outside.url)
                }
                try await bounded(.seconds(10), "download") { await waiter.value }
                #expect(task.error != nil)
                #expect(FileManager.default.fileExists(atPath: outside.file("b").path), "swapOuter \(swapOuter)")
                #expect(FileManager.default.fileExists(atPath: outside.file("c").path), "swapOuter \(swapOuter)")
                #expect(FileManager.default.fileExists(atPath: outside.file("keep").path), "swapOuter \(swapOuter)")
                #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: scratch.file(swapOuter ? "a" : "a/b").path)) != nil,
                        "the link was removed")
            }
            await server.shutdown()
        }
    }
}
