import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

private func session(_ delegate: (any DownloadSessionDelegate)? = nil, connections: Int = 4,
                     restarts: Bool = true, credentials: Bool = false) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.syncsBeforeMove = false
    configuration.restartsWhenRemoteFileChanges = restarts
    configuration.resumeDataIncludesCredentials = credentials
    return DownloadSession(configuration: configuration, delegate: delegate)
}

/// Starts a throttled download, waits, and cancels it with resume data.
private func partialDownload(_ server: TestServer, path: String, after: Duration = .milliseconds(500),
                             request: URLRequest? = nil, session: DownloadSession = session()) async throws -> Data {
    let task = session.downloadTask(with: request ?? URLRequest(url: server.url(path)))
    task.resume()
    try await Task.sleep(for: after)
    return try #require(await task.cancelByProducingResumeData())
}

/// Whether a request asks again for done bytes beyond the seam overlap (16 KiB each side, by
/// design: those bytes are compared, not written).
private func overlaps(_ spec: String?, _ done: [Range<Int64>]) -> Bool {
    guard let spec, spec.hasPrefix("bytes=") else { return true }
    let parts = spec.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
    guard let first = Int64(parts[0]), let last = Int64(parts[1]) else { return true }
    let seam: Int64 = 16 << 10
    let inner = (first + seam)..<max(first + seam, last + 1 - seam)
    return done.contains { $0.overlaps(inner) }
}

extension Integration {
    @Suite("Resume")
    struct ResumeTests {
        @Test("Cancel with resume data, then resume: exact bytes, and no request for bytes already done")
        func cancelAndResume() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 71)
            server.serve(ServedFile(content: content, etag: "\"r1\"", bytesPerSecond: 2 << 20), at: "/f")
            let blob = try await partialDownload(server, path: "/f")
            let resume = try ResumeData(blob)
            #expect(resume.bytesDone > 0 && resume.bytesDone < content.size)
            #expect(resume.etag == "\"r1\"")
            #expect(FileManager.default.fileExists(atPath: resume.tempFile.path))
            let requestsBefore = server.requests.count
            let recorder = Recorder()
            let task = session(recorder).downloadTask(withResumeData: blob)
            task.resume()
            #expect(await recorder.waitForCompletion())
            // As URLSession's fileOffset: every byte on disk that is not fetched again.
            #expect(recorder.recorded.first == .resumed(resume.bytesDone, content.size))
            #expect(recorder.recorded.last == .completed(nil))
            #expect(recorder.digestDuringFinish == content.sha256)
            let after = server.requests[requestsBefore...]
            #expect(!after.isEmpty)
            for request in after {
                #expect(!overlaps(request.range, resume.doneRanges), "asked again for done bytes: \(request.range ?? "")")
                #expect(request.ifRange == "\"r1\"")
            }
            #expect(!FileManager.default.fileExists(atPath: resume.tempFile.path), "the delivered file was not cleaned up")
        }

        @Test("Between cancel and resume the server serves another version under the same ETag, ignoring If-Range: caught at the seams, one whole version")
        func sameValidatorOtherBytes() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 74), etag: "\"same\"",
                                    bytesPerSecond: 2 << 20), at: "/f")
            let blob = try await partialDownload(server, path: "/f")
            #expect(try ResumeData(blob).bytesDone > 0)
            let other = GeneratedContent(size: 8 << 20, seed: 75)
            server.serve(ServedFile(content: other, etag: "\"same\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            _ = try await session().download(resumeFrom: blob, to: scratch.file("out"))
            // Only the new version as a whole is acceptable: never old bytes followed by new.
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == other.sha256)
            #expect(server.requests.contains { $0.range == nil }, "the mismatch should have led to one stream")
        }

        @Test("The file changes on the server between cancel and resume: start over, new bytes exact")
        func remoteChangedRestarts() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 72), etag: "\"old\"",
                                    bytesPerSecond: 2 << 20), at: "/f")
            let blob = try await partialDownload(server, path: "/f")
            let fresh = GeneratedContent(size: (6 << 20) + 5, seed: 73)
            server.serve(ServedFile(content: fresh, etag: "\"new\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let recorder = Recorder(moveTo: scratch.file("out"))
            let task = session(recorder).downloadTask(withResumeData: blob)
            task.resume()
            #expect(await recorder.waitForCompletion())
            // Told once, as URLSession tells a 200 to a resumed request: offset 0, never the old one first.
            let resumes = recorder.recorded.filter { if case .resumed = $0 { true } else { false } }
            #expect(resumes == [.resumed(0, NSURLSessionTransferSizeUnknown)], "\(resumes)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == fresh.sha256)
            #expect(task.countOfBytesExpectedToReceive == fresh.size)
        }

        @Test("With restarts off, a changed file fails with remoteFileChanged")
        func remoteChangedFails() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 74), etag: "\"old\"",
                                    bytesPerSecond: 2 << 20), at: "/f")
            let blob = try await partialDownload(server, path: "/f")
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 75), etag: "\"new\""), at: "/f")
            do {
                _ = try await session(restarts: false).download(resumeFrom: blob)
                Issue.record("expected remoteFileChanged")
            } catch let error as HaulError {
                guard case .remoteFileChanged = error else { Issue.record("wrong error \(error)"); return }
                #expect(error.description.contains("changed on the server"))
            }
        }

        @Test("A missing, truncated or replaced partial file is a clear error, not a silent restart",
              arguments: ["missing", "truncated", "replaced"])
        func damagedPartialFile(damage: String) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 76), etag: "\"x\"",
                                    bytesPerSecond: 4 << 20), at: "/f")
            let blob = try await partialDownload(server, path: "/f", after: .milliseconds(300))
            let path = try ResumeData(blob).tempFile.path
            switch damage {
            case "missing":
                try FileManager.default.removeItem(atPath: path)
            case "truncated":
                try FileHandle(forWritingTo: URL(fileURLWithPath: path)).truncate(atOffset: 1000)
            default:
                try FileManager.default.removeItem(atPath: path)
                try Data(count: 8 << 20).write(to: URL(fileURLWithPath: path))
            }
            let requestsBefore = server.requests.count
            do {
                _ = try await session().download(resumeFrom: blob)
                Issue.record("expected resumeDataInvalid")
            } catch let error as HaulError {
                guard case .resumeDataInvalid(let reason) = error else { Issue.record("wrong error \(error)"); return }
                let expected = ["missing": "is missing", "truncated": "is shorter than recorded", "replaced": "was replaced"]
                #expect(reason.contains(expected[damage]!), "\(reason)")
            }
            #expect(server.requests.count == requestsBefore, "a request was made anyway")
            // A temp file's journal does not outlive it.
            if damage == "missing" { #expect(!FileManager.default.fileExists(atPath: path + ".journal")) }
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: path + ".journal")
        }

        @Test("Credentials are left out of resume data unless the configuration opts in")
        func credentials() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 77), etag: "\"c\"",
                                    bytesPerSecond: 4 << 20), at: "/f")
            var request = URLRequest(url: server.url("/f"))
            request.setValue("Bearer secret-token", forHTTPHeaderField: "Authorization")
            request.setValue("session=secret-cookie", forHTTPHeaderField: "Cookie")
            request.setValue("kept", forHTTPHeaderField: "X-Other")
            let plain = try await partialDownload(server, path: "/f", after: .milliseconds(200), request: request)
            let text = String(decoding: plain, as: UTF8.self)
            #expect(!text.contains("secret"))
            #expect(text.contains("X-Other"))
            let opted = try await partialDownload(server, path: "/f", after: .milliseconds(200), request: request,
                                                  session: session(credentials: true))
            #expect(String(decoding: opted, as: UTF8.self).contains("secret-token"))
            for blob in [plain, opted] { removeTempFiles(of: try ResumeData(blob)) }
        }

        @Test("The journal beside a destination is kept current while downloading and removed at the end")
        func journalWhileRunning() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 16 << 20, seed: 78)
            server.serve(ServedFile(content: content, etag: "\"j\"", bytesPerSecond: 4 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            let download = Task { try await session().download(from: server.url("/f"), to: destination) }
            try await Task.sleep(for: .milliseconds(700))
            let snapshot = try ResumeData(#require(DownloadSession.journal(for: destination)))
            #expect(snapshot.bytesDone >= 1 << 20, "journal lags: \(snapshot.bytesDone) bytes")
            #expect(snapshot.destination == destination.path)
            _ = try await download.value
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)
            #expect(scratch.contents == ["out"], "left: \(scratch.contents)")
        }

        @Test("A second download to the same destination fails clearly; the first one is untouched")
        func sameDestinationTwice() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 80)
            server.serve(ServedFile(content: content, etag: "\"t\"", bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            let first = Task { try await session().download(from: server.url("/f"), to: destination) }
            // Long enough for a segment to pass 1 MiB at 2 MiB/s, so the journal exists.
            try await Task.sleep(for: .milliseconds(800))
            let journal = DownloadSession.journalURL(for: destination)
            #expect(FileManager.default.fileExists(atPath: journal.path))
            // The message names the user's path, not the hidden partial file.
            await #expect(throws: HaulError.fileInUse(path: destination.path)) {
                try await session().download(from: server.url("/f"), to: destination)
            }
            #expect(FileManager.default.fileExists(atPath: journal.path), "the running download's journal was removed")
            _ = try await first.value
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)
        }

        @Test("Cancelling a download to a destination keeps its journal; download(resumeFrom:) finishes it")
        func cancelledDestinationResumes() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 79)
            server.serve(ServedFile(content: content, lastModified: "Wed, 01 Jan 2031 00:00:00 GMT",
                                    bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            let download = Task { try await session().download(from: server.url("/f"), to: destination) }
            try await Task.sleep(for: .milliseconds(500))
            download.cancel()
            _ = try? await download.value
            let journal = try #require(DownloadSession.journal(for: destination))
            let recorded = try ResumeData(journal)
            #expect(recorded.lastModified == "Wed, 01 Jan 2031 00:00:00 GMT")
            let before = server.requests.count
            _ = try await session().download(resumeFrom: journal)
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)
            #expect(server.requests[before...].allSatisfy { $0.ifRange == "Wed, 01 Jan 2031 00:00:00 GMT" })
            #expect(scratch.contents == ["out"])
        }
    }
}
