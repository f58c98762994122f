import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Testing

/// Every end-to-end suite nests here and runs one test at a time, so each test sees the
/// process's threads and connections as its own.
@Suite("Integration", .serialized)
struct Integration {}

/// A fresh directory for one test's files, removed by `cleanup()`.
struct Scratch {
    let url: URL

    init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("haul-test-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Names in the directory (to check no temp files are left).
    var contents: [String] { (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [] }

    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// A session tuned for tests: small stall timeout and quick retries. Exactly `connections`
/// connections (tests of segmented downloads must get segments from a fast loopback server,
/// where the measured count would be one) unless `adaptive`; `rate` limits every download.
func testSession(connections: Int = 16, minimumSplit: Int64 = 1 << 20, retries: Int = 5,
                 stallSeconds: TimeInterval = 30, adaptive: Bool = false, rate: Int64 = 0) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.adaptsConnectionCount = adaptive
    configuration.minimumSplitSize = minimumSplit
    configuration.retryLimit = retries
    configuration.timeoutIntervalForRequest = stallSeconds
    configuration.syncsBeforeMove = false
    configuration.maximumBytesPerSecond = rate
    return DownloadSession(configuration: configuration)
}

/// Downloads `content` from a fresh server into a scratch file and checks the SHA-256 on disk.
@discardableResult
func downloadAndVerify(_ file: ServedFile, session: DownloadSession,
                       sourceLocation: SourceLocation = #_sourceLocation) async throws -> (TestServer, HTTPURLResponse) {
    let server = try await TestServer.start()
    server.serve(file, at: "/file.bin")
    let scratch = Scratch()
    defer { scratch.cleanup() }
    let destination = scratch.file("out.bin")
    let (location, response) = try await session.download(from: server.url("/file.bin"), to: destination)
    #expect(location.path == destination.path, sourceLocation: sourceLocation)
    let digest = try SHA256.hex(ofFileAt: destination.path)
    #expect(digest == file.content.sha256, "bytes on disk differ from the served content", sourceLocation: sourceLocation)
    #expect(scratch.contents == ["out.bin"], "temp files left behind", sourceLocation: sourceLocation)
    await server.shutdown()
    return (server, response)
}

/// Downloads `/0`, `/1`, … from `server` at once into `scratch` (files `0`, `1`, …) and checks
/// each file's SHA-256 against `contents`.
func downloadConcurrently(_ contents: [GeneratedContent], from server: TestServer, session: DownloadSession,
                          into scratch: Scratch, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for index in contents.indices {
            group.addTask { _ = try await session.download(from: server.url("/\(index)"), to: scratch.file("\(index)")) }
        }
        try await group.waitForAll()
    }
    for (index, content) in contents.enumerated() {
        #expect(try SHA256.hex(ofFileAt: scratch.file("\(index)").path) == content.sha256, sourceLocation: sourceLocation)
    }
}

/// A `Repr-Digest` header field (RFC 9530) carrying `content`'s SHA-256.
func reprDigest(_ content: GeneratedContent) -> (String, String) {
    ("Repr-Digest", "sha-256=:\(Data(bytes(fromHex: content.sha256)!).base64EncodedString()):")
}

/// Removes the temp file a resume blob names and the journal beside it: what a caller that
/// never resumes leaves in the temporary directory.
func removeTempFiles(of resume: ResumeData) {
    try? FileManager.default.removeItem(atPath: resume.tempFile.path)
    try? FileManager.default.removeItem(atPath: resume.tempFile.path + ".journal")
}
