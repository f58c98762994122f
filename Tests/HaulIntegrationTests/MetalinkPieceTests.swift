import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

/// Body bytes a server sent that fall inside `range`.
private func sent(_ server: TestServer, within range: Range<Int64>) -> Int64 {
    server.sentRanges().reduce(0) { total, sent in
        total + max(0, min(sent.upperBound, range.upperBound) - max(sent.lowerBound, range.lowerBound))
    }
}

extension Integration {
    @Suite("Metalink piece verification")
    struct MetalinkPieceTests {
        static let pieceLength: Int64 = 256 << 10

        @Test("Three mirrors, one corrupts two ranges: exact bytes, only the bad pieces fetched again, the liar named")
        func liarDropped() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 4 << 20, seed: 941)
            let piece = Self.pieceLength
            // The first source serves the same length and ETag, but other bytes inside pieces 1 and
            // 15, the last: a source is dropped at its second bad piece, and the last piece cannot
            // be checked before the liar has sent every byte, so it always sends the whole file.
            let last = content.size / piece - 1
            let lying = GeneratedContent(size: content.size, seed: 941, patches: [
                .init(from: piece + 1000, to: piece + 1010, seed: 7), .init(from: last * piece + 5, to: last * piece + 6, seed: 7),
            ])
            servers[0].serve(ServedFile(content: lying, etag: "\"v\""), at: "/f")
            servers[1].serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
            servers[2].serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let metalink = try metalinkFor(content, name: "f.bin", urls: servers.map { $0.url("/f") }, pieceLength: piece)
            // One connection: the first source sends the whole file once, so every byte served
            // again is a re-fetch.
            let task = testSession(connections: 1).downloadTask(with: metalink, inDirectory: scratch.url)
            let events = task.events
            task.resume()
            for try await _ in events {}
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == content.sha256)
            #expect(task.sourcesWithBadPieces == [servers[0].url("/f").absoluteString])
            #expect(servers[0].bytesSent == content.size)
            // The other two served bytes of the two bad pieces only: each piece whole (an
            // endgame twin may fetch the tail of one twice), nothing else.
            let bad = [1, last].map { $0 * piece..<($0 + 1) * piece }
            for server in servers.dropFirst() {
                for range in server.sentRanges() {
                    #expect(bad.contains { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound }, "\(range)")
                }
            }
            for range in bad {
                #expect(sent(servers[1], within: range) + sent(servers[2], within: range) >= piece, "\(range)")
            }
            #expect(servers[1].bytesSent + servers[2].bytesSent <= 4 * piece)
            #expect(filesUnder(scratch.url) == ["f.bin"])
            for server in servers { await server.shutdown() }
        }

        @Test("Many connections over three mirrors, one corrupts a range: exact bytes, few bytes fetched again, the liar named")
        func liarAmongMany() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 12 << 20, seed: 942)
            let piece = Self.pieceLength
            // Every source corrupts a range the liar is sure to serve: bytes of each third.
            let patches = (0..<3).map { third -> GeneratedContent.Patch in
                let at = Int64(third) * (4 << 20) + 3 * piece + 17
                return .init(from: at, to: at + 3, seed: 9)
            }
            let lying = GeneratedContent(size: content.size, seed: 942, patches: patches)
            servers[0].serve(ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 8 << 20), at: "/f")
            servers[1].serve(ServedFile(content: lying, etag: "\"b\"", bytesPerSecond: 8 << 20), at: "/f")
            servers[2].serve(ServedFile(content: content, etag: "\"c\"", bytesPerSecond: 8 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let metalink = try metalinkFor(content, name: "f.bin", urls: servers.map { $0.url("/f") }, pieceLength: piece)
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = 6
            configuration.minimumSplitSize = 1 << 20
            configuration.syncsBeforeMove = false
            // Seam checks asked for: with piece hashes they must not turn a liar into a restart.
            configuration.seamOverlap = 64 << 10
            let task = DownloadSession(configuration: configuration).downloadTask(with: metalink, inDirectory: scratch.url)
            let events = task.events
            task.resume()
            for try await _ in events {}
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == content.sha256)
            // Every mirror served part of the file, although their ETags differ.
            for server in servers { #expect(server.bytesSent > 0) }
            #expect(servers.dropFirst().allSatisfy { $0.requests.allSatisfy { $0.ifRange == nil } })
            // Never restarted from byte 0 (a seam mismatch would have): one probe in all.
            let probes = servers.flatMap(\.requests).filter { $0.range == "bytes=0-" }
            #expect(probes.count == 1)
            #expect(task.seamChecks.mismatched == 0)
            let served = servers.reduce(0) { $0 + $1.bytesSent }
            // Twins, a dropped source's cut-off responses and the re-fetched pieces: far less than
            // a whole second copy.
            #expect(served < content.size + content.size / 2, "served \(served) of \(content.size)")
            if servers[1].bytesSent > 0, patches.contains(where: { sent(servers[1], within: $0.from..<$0.to) > 0 }) {
                #expect(task.sourcesWithBadPieces.contains(servers[1].url("/f").absoluteString))
            }
            #expect(!task.sourcesWithBadPieces.contains(servers[0].url("/f").absoluteString))
            #expect(!task.sourcesWithBadPieces.contains(servers[2].url("/f").absoluteString))
            for server in servers { await server.shutdown() }
        }

        @Test("Every source lies about a piece: the download fails with a clear error and keeps nothing")
        func everyoneLies() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 2 << 20, seed: 943)
            let lying = GeneratedContent(size: content.size, seed: 943, patches: [.init(from: 5, to: 6, seed: 3)])
            for server in servers { server.serve(ServedFile(content: lying, etag: "\"v\""), at: "/f") }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let metalink = try metalinkFor(content, name: "f.bin", urls: servers.map { $0.url("/f") }, pieceLength: Self.pieceLength)
            do {
                _ = try await testSession(connections: 2).download(metalink: metalink, to: scratch.url)
                Issue.record("bad bytes accepted")
            } catch let error as HaulError {
                guard case .badPiece(let index, _, _) = error else {
                    Issue.record("\(error)")
                    return
                }
                #expect(index == 0)
                #expect(error.description.contains("piece 0"))
            }
            #expect(filesUnder(scratch.url).isEmpty)
            for server in servers { await server.shutdown() }
        }

        @Test("haul get names the source that delivered bad pieces")
        func commandNamesTheLiar() async throws {
            let servers = [try await TestServer.start(), try await TestServer.start()]
            let content = GeneratedContent(size: 2 << 20, seed: 944)
            let lying = GeneratedContent(size: content.size, seed: 944, patches: [.init(from: 300_000, to: 300_001, seed: 3)])
            servers[0].serve(ServedFile(content: lying, etag: "\"v\""), at: "/f")
            servers[1].serve(ServedFile(content: content, etag: "\"v\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try metalinkFor(content, name: "f.bin", urls: servers.map { $0.url("/f") }, pieceLength: Self.pieceLength)
                .xmlData().write(to: scratch.file("f.meta4"))
            let result = try runHaul(["get", scratch.file("f.meta4").path, "-d", scratch.url.path, "-x", "1"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == content.sha256)
            #expect(result.stderr.contains("\(servers[0].url("/f").absoluteString) delivered bad pieces"), "\(result.stderr)")
            for server in servers { await server.shutdown() }
        }
    }
}

extension Integration.MetalinkPieceTests {
    @Test("Cancelled and resumed: the resume data records the sources and verified pieces; the result is exact")
    func resume() async throws {
        let servers = [try await TestServer.start(), try await TestServer.start()]
        let content = GeneratedContent(size: 4 << 20, seed: 945)
        for server in servers { server.serve(ServedFile(content: content, etag: "\"v\"", bytesPerSecond: 2 << 20), at: "/f") }
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let metalink = try metalinkFor(content, name: "f.bin", urls: servers.map { $0.url("/f") }, pieceLength: Self.pieceLength)
        let session = testSession(connections: 1)
        let task = session.downloadTask(with: metalink, inDirectory: scratch.url)
        task.resume()
        // Bounded: about a second at 2 MiB/s.
        for _ in 0..<100 where task.countOfBytesReceived < 2 << 20 { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(250))
        let data = try #require(await task.cancelByProducingResumeData())
        let resume = try ResumeData(data)
        #expect(resume.pieceLength == Self.pieceLength)
        #expect(resume.mirrors == [servers[1].url("/f")])
        #expect(resume.verifiedPieces.count >= 4, "\(resume.verifiedPieces)")
        // Every verified piece lies in bytes on disk.
        for index in resume.verifiedPieces {
            let range = Int64(index) * Self.pieceLength..<Int64(index + 1) * Self.pieceLength
            #expect(resume.doneRanges.contains { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound })
        }
        let sentBefore = servers.reduce(0) { $0 + $1.bytesSent }
        let resumed = session.downloadTask(with: metalink, inDirectory: scratch.url, preferringLocation: nil, resumeData: data)
        let events = resumed.events
        resumed.resume()
        for try await _ in events {}
        #expect(try SHA256.hex(ofFileAt: scratch.file("f.bin").path) == content.sha256)
        // Only what was missing was fetched again.
        let sentAfter = servers.reduce(0) { $0 + $1.bytesSent } - sentBefore
        #expect(sentAfter <= content.size - resume.bytesDone + (1 << 20), "\(sentAfter)")
        #expect(filesUnder(scratch.url) == ["f.bin"])
        for server in servers { await server.shutdown() }
    }
}
