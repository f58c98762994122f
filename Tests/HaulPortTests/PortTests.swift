import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Testing

/// The README's rename table, in its order: `(URLSession name, Haul name)`.
private func renameTable() throws -> [(String, String)] {
    let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../README.md")
    let text = try String(contentsOf: readme, encoding: .utf8)
    guard let start = text.range(of: "### Porting URLSession code") else { return [] }
    var rows: [(String, String)] = []
    for line in text[start.upperBound...].split(separator: "\n") {
        if line.hasPrefix("#") { break }
        let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        guard cells.count == 2, cells[0].hasPrefix("`"), cells[1].hasPrefix("`") else { continue }
        rows.append((String(cells[0].dropFirst().dropLast()), String(cells[1].dropFirst().dropLast())))
    }
    return rows
}

/// `text` with every whole-word occurrence of each name replaced, longest names first.
private func applying(_ table: [(String, String)], to text: String) throws -> String {
    var out = text
    for (old, new) in table.sorted(by: { $0.0.count > $1.0.count }) {
        let escaped = NSRegularExpression.escapedPattern(for: old)
        let tail = old.last.map { $0.isLetter || $0.isNumber } == true ? "(?![A-Za-z0-9_])" : ""
        let expression = try NSRegularExpression(pattern: "(?<![A-Za-z0-9_])" + escaped + tail)
        out = expression.stringByReplacingMatches(in: out, range: NSRange(out.startIndex..., in: out),
                                                  withTemplate: NSRegularExpression.escapedTemplate(for: new))
    }
    return out
}

private func sampleBody(_ name: String) throws -> String {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(name)
    let text = try String(contentsOf: url, encoding: .utf8)
    guard let marker = text.range(of: "// sample begins\n") else { return "" }
    return String(text[marker.upperBound...])
}

private func wait(_ semaphore: DispatchSemaphore, seconds: Double = 30) async -> Bool {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(returning: semaphore.wait(timeout: .now() + seconds) == .success) }
    }
}

@Suite("A URLSession download sample, ported by renames only", .serialized)
struct PortTests {
    @Test("The port is the sample with only README's renames applied")
    func onlyRenames() throws {
        let table = try renameTable()
        #expect(table.count >= 10, "README's rename table was not found")
        #expect(table.contains { $0 == ("URLSessionDownloadTask", "DownloadTask") })
        let original = try sampleBody("URLSessionSample.swift.txt")
        #expect(original.contains("URLSessionDownloadDelegate"))
        #expect(try applying(table, to: original) == sampleBody("PortedSample.swift"))
    }

    @Test("Delegate with progress; a failure's resume data continues the download to the exact bytes")
    func delegateAndResumeFromFailure() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 12 << 20, seed: 171)
        // After the first answer the server fails every request, more often than the default
        // retries allow.
        server.serve(ServedFile(content: content, etag: "\"port\"", bytesPerSecond: 4 << 20,
                                faults: [Fault(.status(500, retryAfter: nil), times: 1000, minimumOffset: 1)]),
                     at: "/sample.bin")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("haul-port-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let controller = DownloadController(folder: folder)
        controller.startDownload(url: server.url("/sample.bin"))
        #expect(await wait(controller.done))
        #expect((controller.failure as? URLError)?.code == .fileDoesNotExist)
        #expect(controller.resumeData != nil, "the failure's userInfo carries resume data")
        #expect(controller.progress > 0)
        // The server recovers: the same version, no more faults.
        server.serve(ServedFile(content: content, etag: "\"port\""), at: "/sample.bin")
        controller.resumeDownload()
        #expect(await wait(controller.done))
        #expect(controller.failure == nil && !controller.serverError)
        let saved = try #require(controller.savedURL)
        #expect(try SHA256.hex(ofFileAt: saved.path) == content.sha256)
        #expect(controller.progress == 1)
    }

    @Test("Pause (cancel with resume data) and resume: exact bytes")
    func pauseAndResume() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 8 << 20, seed: 172)
        server.serve(ServedFile(content: content, etag: "\"port\"", bytesPerSecond: 2 << 20), at: "/paused.bin")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("haul-port-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let controller = DownloadController(folder: folder)
        controller.startDownload(url: server.url("/paused.bin"))
        for _ in 0..<100 where controller.progress < 0.2 { try await Task.sleep(for: .milliseconds(50)) }
        let paused = DispatchSemaphore(value: 0)
        controller.pause { paused.signal() }
        #expect(await wait(paused))
        #expect(await wait(controller.done), "the cancelled task completes")
        #expect((controller.failure as? URLError)?.code == .cancelled)
        #expect(controller.resumeData != nil)
        controller.resumeDownload()
        #expect(await wait(controller.done))
        let saved = try #require(controller.savedURL)
        #expect(try SHA256.hex(ofFileAt: saved.path) == content.sha256)
    }

    @Test("Completion handler and async/await on the shared session: exact bytes")
    func completionHandlerAndAsync() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 3 << 20, seed: 173)
        server.serve(ServedFile(content: content), at: "/handler.bin")
        server.serve(ServedFile(content: content), at: "/async.bin")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("haul-port-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let viaHandler: URL = try await withCheckedThrowingContinuation { continuation in
            DownloadController.fetch(server.url("/handler.bin"), into: folder) { continuation.resume(with: $0) }
        }
        #expect(try SHA256.hex(ofFileAt: viaHandler.path) == content.sha256)
        let viaAsync = try await DownloadController.fetch(server.url("/async.bin"), into: folder)
        #expect(try SHA256.hex(ofFileAt: viaAsync.path) == content.sha256)
        let missing = server.url("/missing.bin")
        await #expect(throws: URLError.self) { try await DownloadController.fetch(missing, into: folder) }
    }
}
