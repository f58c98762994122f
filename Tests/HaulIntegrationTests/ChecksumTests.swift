import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Testing

private func session(_ delegate: (any DownloadSessionDelegate)? = nil, keep: Bool = false,
                     seamOverlap: Int64 = 16 << 10) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.seamOverlap = seamOverlap
    configuration.connectionsPerDownload = 8
    configuration.adaptsConnectionCount = false  // segments, even from a fast loopback server
    configuration.syncsBeforeMove = false
    configuration.keepsFilesFailingChecksum = keep
    return DownloadSession(configuration: configuration, delegate: delegate)
}

private func base64(hex: String) -> String {
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        bytes.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return Data(bytes).base64EncodedString()
}

extension Integration {
    @Suite("SHA-256 verification")
    struct ChecksumTests {
        static let content = GeneratedContent(size: (6 << 20) + 123, seed: 91)

        @Test("A matching digest in each form passes; the digest is on the task", arguments: ["hex", "aria2", "sri"])
        func matching(form: String) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: Self.content), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let hex = Self.content.sha256
            let text = ["hex": hex, "aria2": "sha-256=\(hex.uppercased())", "sri": "sha256-\(base64(hex: hex))"][form]!
            let task = session().downloadTask(with: URLRequest(url: server.url("/f")), to: scratch.file("out"))
            task.expectedSHA256 = text
            let events = task.events
            task.resume()
            for try await _ in events {}
            #expect(task.sha256 == hex)
            #expect(task.checksumSource == .caller)
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == hex)
        }

        @Test("A mismatching digest fails with expected and actual; nothing is moved or delivered")
        func mismatching() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: Self.content), at: "/f")
            let temp = Scratch()
            defer { temp.cleanup() }
            var configuration = DownloadSession.Configuration()
            configuration.temporaryDirectory = temp.url
            let recorder = Recorder()
            let wrong = String(repeating: "ab", count: 32)
            let task = DownloadSession(configuration: configuration, delegate: recorder).downloadTask(with: server.url("/f"))
            task.expectedSHA256 = "sha-256=\(wrong)"
            task.resume()
            #expect(await recorder.waitForCompletion())
            #expect(task.error as? HaulError == .checksumMismatch(expected: wrong, actual: Self.content.sha256))
            #expect(!recorder.recorded.contains(.finished), "didFinishDownloadingTo was called for a bad file")
            #expect(temp.contents.isEmpty, "the bad file was kept: \(temp.contents)")
        }

        @Test("keepsFilesFailingChecksum keeps the bad file for inspection")
        func keepForInspection() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: Self.content), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let wrong = String(repeating: "cd", count: 32)
            await #expect(throws: HaulError.checksumMismatch(expected: wrong, actual: Self.content.sha256)) {
                try await session(keep: true).download(for: URLRequest(url: server.url("/f")), to: scratch.file("out"),
                                                       expectedSHA256: wrong)
            }
            #expect(!FileManager.default.fileExists(atPath: scratch.file("out").path))
            #expect(scratch.contents == [".out.haul-part"])
        }

        @Test("A malformed expected digest is a clear error before any request")
        func malformed() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            await #expect(throws: HaulError.invalidChecksum("nope")) {
                try await session().download(for: URLRequest(url: server.url("/f")), expectedSHA256: "nope")
            }
            #expect(server.requests.isEmpty)
        }

        @Test("The server's Repr-Digest or Digest is used when none was given", arguments: ["Repr-Digest", "Digest"])
        func serverDigest(header: String) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let encoded = base64(hex: Self.content.sha256)
            var file = ServedFile(content: Self.content)
            file.extraHeaders = [(header, header == "Digest" ? "SHA-256=\(encoded)" : "sha-256=:\(encoded):")]
            server.serve(file, at: "/good")
            var bad = ServedFile(content: Self.content)
            bad.extraHeaders = [(header, header == "Digest" ? "SHA-256=\(base64(hex: String(repeating: "00", count: 32)))"
                                                              : "sha-256=:\(base64(hex: String(repeating: "00", count: 32))):")]
            server.serve(bad, at: "/bad")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let task = session().downloadTask(with: URLRequest(url: server.url("/good")), to: scratch.file("good"))
            let events = task.events
            task.resume()
            for try await _ in events {}
            #expect(task.checksumSource?.rawValue == header)
            #expect(task.sha256 == Self.content.sha256)
            do {
                _ = try await session().download(from: server.url("/bad"), to: scratch.file("bad"))
                Issue.record("a wrong server digest was not caught")
            } catch let error as HaulError {
                guard case .checksumMismatch = error else { Issue.record("wrong error \(error)"); return }
            }
        }

        @Test("A segment whose first byte is wrong is caught at its seam and fetched again as one stream")
        func corruptSeamHealed() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: Self.content, faults: [Fault(.corruptBody, times: 1, minimumOffset: 1 << 20)]),
                         at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            _ = try await session().download(for: URLRequest(url: server.url("/f")), to: scratch.file("out"),
                                             expectedSHA256: Self.content.sha256)
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == Self.content.sha256)
            #expect(server.requests.contains { $0.range == nil }, "after the seam mismatch the file comes as one stream")
        }

        @Test("Without seam checks, one segment with wrong bytes is caught by the digest")
        func corruptSegment() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: Self.content, faults: [Fault(.corruptBody, times: 1, minimumOffset: 1 << 20)]),
                         at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            do {
                _ = try await session(seamOverlap: 0).download(for: URLRequest(url: server.url("/f")), to: scratch.file("out"),
                                                 expectedSHA256: Self.content.sha256)
                Issue.record("corrupt bytes were not caught")
            } catch let error as HaulError {
                guard case .checksumMismatch(let expected, let actual) = error else { Issue.record("\(error)"); return }
                #expect(expected == Self.content.sha256 && actual != expected)
            }
            #expect(scratch.contents.isEmpty)
        }

        @Test("Digest with resume: cancel mid-way, resume; the digest covers every byte")
        func resumed() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 92)
            server.serve(ServedFile(content: content, etag: "\"h\"", bytesPerSecond: 2 << 20), at: "/f")
            let first = session().downloadTask(with: server.url("/f"))
            first.expectedSHA256 = content.sha256
            first.resume()
            try await Task.sleep(for: .milliseconds(500))
            let blob = try #require(await first.cancelByProducingResumeData())
            let scratch = Scratch()
            defer { scratch.cleanup() }
            // The expected digest travels in the resume data.
            let second = session().downloadTask(withResumeData: blob, to: scratch.file("out"))
            let events = second.events
            second.resume()
            for try await _ in events {}
            #expect(second.sha256 == content.sha256)
            #expect(second.checksumSource == .caller)
            // And a wrong expectation after resume still fails.
            let third = session().downloadTask(with: server.url("/f"))
            third.resume()
            try await Task.sleep(for: .milliseconds(400))
            let blob3 = try #require(await third.cancelByProducingResumeData())
            let fourth = session().downloadTask(withResumeData: blob3, to: scratch.file("out3"))
            fourth.expectedSHA256 = String(repeating: "0", count: 64)
            let events4 = fourth.events
            fourth.resume()
            await #expect(throws: HaulError.self) { for try await _ in events4 {} }
        }

        @Test("A 0-byte file has the empty SHA-256")
        func empty() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 0)), at: "/e")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            let (location, _) = try await session().download(for: URLRequest(url: server.url("/e")), to: scratch.file("e"),
                                                              expectedSHA256: empty)
            #expect(try SHA256.hex(ofFileAt: location.path) == empty)
        }
    }
}
