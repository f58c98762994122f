import Foundation
@testable import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Held bytes")
    struct HeldBytesTests {
        @Test("Bytes a response delivered before it went quiet count within a tick and are in the resume data")
        func quietResponseCounts() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            // 50 000 bytes: one 32 KiB run is written at once, the other 17 232 bytes are held
            // until something hands them on.
            let content = GeneratedContent(size: 4 << 20, seed: 171)
            server.serve(ServedFile(content: content, etag: "\"h\"",
                                    faults: [Fault(.stallAfter(bytes: 50_000), times: 1)]), at: "/f")
            let task = testSession(connections: 1, stallSeconds: 30).downloadTask(with: server.url("/f"))
            task.resume()
            let deadline = ContinuousClock.now + .seconds(5)
            while task.countOfBytesReceived < 50_000, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(task.countOfBytesReceived == 50_000, "bytes held back were not counted while the response was quiet")
            let blob = try #require(await task.cancelByProducingResumeData())
            let resume = try ResumeData(blob)
            #expect(resume.doneRanges == [0..<50_000])
            let written = try #require(FileHandle(forReadingAtPath: resume.tempFile.path))
            defer { try? written.close() }
            let head = try #require(try written.read(upToCount: 50_000))
            #expect(head == Data(content.bytes(0..<50_000)), "the counted bytes are not the served ones")
            removeTempFiles(of: resume)
        }
    }
}
