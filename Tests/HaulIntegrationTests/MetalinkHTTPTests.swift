import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

/// `Link: </f.meta4>; rel=describedby; type="application/metalink4+xml"`.
private let describedBy = ("Link", "</f.meta4>; rel=describedby; type=\"application/metalink4+xml\"")

/// `Repr-Digest: sha-256=:BASE64:` of `content`.
/// Downloads `url` into `destination` through a task, so its results can be read.
private func fetch(_ url: URL, to destination: URL, session: DownloadSession) async throws -> DownloadTask {
    let task = session.downloadTask(with: URLRequest(url: url), to: destination)
    let events = task.events
    task.resume()
    for try await _ in events {}
    return task
}

extension Integration {
    @Suite("Metalink/HTTP: the metalink and mirrors a server names")
    struct MetalinkHTTPTests {
        static let pieceLength: Int64 = 256 << 10

        @Test("rel=describedby: its pieces catch a mirror's bad range; only the bad piece is fetched again")
        func describedByPieces() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 5 << 20, seed: 951)
            let piece = Self.pieceLength
            // The metalink's mirror serves other bytes in piece 18, inside the last quarter (the
            // range the split gives it).
            let bad = 18 * piece..<19 * piece
            let lying = GeneratedContent(size: content.size, seed: 951, patches: [.init(from: bad.lowerBound + 100, to: bad.lowerBound + 101, seed: 5)])
            var primary = ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 1 << 20)
            primary.extraHeaders = [describedBy]
            servers[0].serve(primary, at: "/f")
            servers[1].serve(ServedFile(content: lying, etag: "\"b\""), at: "/f")
            let meta4 = try metalinkFor(content, name: "f.bin", urls: [servers[1].url("/f"), servers[0].url("/f")],
                                        pieceLength: piece).xmlData()
            servers[0].serve(document: String(decoding: meta4, as: UTF8.self), contentType: "application/metalink4+xml",
                             at: "/f.meta4")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let task = try await fetch(servers[0].url("/f"), to: scratch.file("f.bin"), session: testSession(connections: 4))
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == content.sha256)
            #expect(task.sourcesWithBadPieces == [servers[1].url("/f").absoluteString])
            #expect(task.checksumSource == .metalink)
            #expect(servers[0].requests.filter { $0.path == "/f.meta4" }.count == 1)
            // The mirror served a range from the split; its ETag is its own, so no If-Range went to it.
            #expect(servers[1].bytesSent > 0)
            #expect(servers[1].requests.allSatisfy { $0.ifRange == nil })
            // The bad piece came again from the first server, whole, in ranges that reach at most
            // a seam beyond it (an endgame twin may split it in two), and the mirror was never
            // asked for it again.
            let slack: Int64 = 64 << 10
            let again = servers[0].sentRanges().filter { $0.lowerBound >= bad.lowerBound - slack && $0.upperBound <= bad.upperBound + slack }
            #expect(again.sorted { $0.lowerBound < $1.lowerBound }.reduce(bad.lowerBound) { covered, range in
                range.lowerBound <= covered ? max(covered, range.upperBound) : covered
            } >= bad.upperBound, "\(servers[0].sentRanges())")
            // (A range of the pieces after it may start up to a seam's reach inside it.)
            #expect(servers[1].sentRanges().filter { $0.lowerBound >= bad.lowerBound - slack && $0.lowerBound < bad.upperBound - slack }
                .isEmpty, "\(servers[1].sentRanges())")
            let served = servers.reduce(0) { $0 + $1.bytesSent }
            #expect(served < content.size + content.size / 2, "served \(served)")
            #expect(filesUnder(scratch.url) == ["f.bin"])
            for server in servers { await server.shutdown() }
        }

        @Test("rel=describedby: a wrong hash fails clearly and leaves nothing; so does one the server's Repr-Digest contradicts")
        func describedByWrongHash() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 3 << 20, seed: 952)
            let wrong = Metalink.Hash(type: "sha-256", value: Array(repeating: 0xab, count: 32))
            let meta4 = try metalinkFor(content, name: "f.bin", urls: [server.url("/f")], pieceLength: Self.pieceLength,
                                        wholeHash: wrong).xmlData()
            server.serve(document: String(decoding: meta4, as: UTF8.self), contentType: "application/metalink4+xml",
                         at: "/f.meta4")
            for withServerDigest in [false, true] {
                var file = ServedFile(content: content, etag: "\"v\"")
                file.extraHeaders = [describedBy] + (withServerDigest ? [reprDigest(content)] : [])
                server.serve(file, at: "/f")
                let scratch = Scratch()
                defer { scratch.cleanup() }
                do {
                    _ = try await testSession(connections: 4).download(from: server.url("/f"), to: scratch.file("f.bin"))
                    Issue.record("a wrong hash was accepted")
                } catch let error as HaulError {
                    if withServerDigest {
                        guard case .remoteFileChanged(let reason) = error else {
                            Issue.record("\(error)")
                            continue
                        }
                        #expect(reason.contains(content.sha256) && reason.contains(String(repeating: "ab", count: 32)), "\(reason)")
                        #expect(reason.contains("Repr-Digest"), "\(reason)")
                    } else {
                        #expect(error == .checksumMismatch(expected: String(repeating: "ab", count: 32), actual: content.sha256))
                    }
                }
                #expect(filesUnder(scratch.url).isEmpty)
            }
            await server.shutdown()
        }

        @Test("rel=describedby: a metalink of another size, a missing one, or the switch off: a plain download")
        func describedByIgnored() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 2 << 20, seed: 953)
            let other = GeneratedContent(size: content.size + 1, seed: 953)
            var file = ServedFile(content: content, etag: "\"v\"")
            file.extraHeaders = [describedBy]
            server.serve(file, at: "/f")
            for (name, served, usesLinks) in [("missing", false, true), ("other size", true, true), ("switched off", true, false)] {
                let before = server.requests.count
                if served {
                    let meta4 = try metalinkFor(other, name: "f.bin", urls: [server.url("/f")], pieceLength: Self.pieceLength).xmlData()
                    server.serve(document: String(decoding: meta4, as: UTF8.self), contentType: "application/metalink4+xml",
                                 at: "/f.meta4")
                }
                let scratch = Scratch()
                defer { scratch.cleanup() }
                var configuration = DownloadSession.Configuration()
                configuration.connectionsPerDownload = 4
                configuration.syncsBeforeMove = false
                configuration.usesMirrorsFromLinkHeaders = usesLinks
                let task = try await fetch(server.url("/f"), to: scratch.file("f.bin"),
                                           session: DownloadSession(configuration: configuration))
                #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == content.sha256, "\(name)")
                #expect(task.checksumSource == nil, "\(name)")
                let asked = server.requests[before...].filter { $0.path == "/f.meta4" }.count
                #expect(asked == (usesLinks ? 1 : 0), "\(name)")
            }
            await server.shutdown()
        }
    }
}
