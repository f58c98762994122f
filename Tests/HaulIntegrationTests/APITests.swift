import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Synchronization
import Testing

/// Records every delegate call, in order, and can move the finished file away.
final class Recorder: DownloadSessionDelegate, @unchecked Sendable {
    // Unchecked: `lock` guards `calls`, `moved` and `seenDuringFinish`.
    enum Call: Equatable {
        case wrote(Int64, Int64, Int64)
        case finished
        case completed(String?)
        case resumed(Int64, Int64)
    }

    private let lock = NSLock()
    private var calls: [Call] = []
    private var threadsInside = 0
    private(set) var overlapped = false
    let moveTo: URL?
    private(set) var digestDuringFinish: String?
    let done = DispatchSemaphore(value: 0)

    init(moveTo: URL? = nil) { self.moveTo = moveTo }

    var recorded: [Call] { lock.withLock { calls } }

    private func record(_ call: Call) {
        let inside = lock.withLock { threadsInside += 1; calls.append(call); return threadsInside }
        if inside > 1 { lock.withLock { overlapped = true } }
        Thread.sleep(forTimeInterval: 0.001)
        lock.withLock { threadsInside -= 1 }
    }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didWriteData bytesWritten: Int64,
                         totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64) {
        record(.wrote(bytesWritten, totalBytesWritten, totalBytesExpectedToWrite))
    }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didFinishDownloadingTo location: URL) {
        let digest = try? SHA256.hex(ofFileAt: location.path)
        lock.withLock { digestDuringFinish = digest }
        if let moveTo { try? FileManager.default.moveItem(at: location, to: moveTo) }
        record(.finished)
    }

    func downloadSession(_ session: DownloadSession, task: DownloadTask, didCompleteWithError error: (any Error)?) {
        record(.completed(error.map { "\(($0 as? URLError)?.code.rawValue ?? -1)" }))
        done.signal()
    }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didResumeAtOffset fileOffset: Int64,
                         expectedTotalBytes: Int64) {
        record(.resumed(fileOffset, expectedTotalBytes))
    }

    /// Waits (off the cooperative pool) for didCompleteWithError.
    func waitForCompletion(seconds: Double = 30) async -> Bool {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: self.done.wait(timeout: .now() + seconds) == .success) }
        }
    }
}

private func session(_ delegate: (any DownloadSessionDelegate)?, connections: Int = 4, retries: Int = 5,
                     stall: TimeInterval = 30, queue: OperationQueue? = nil) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.adaptsConnectionCount = false  // these tests need segments from a fast loopback server
    configuration.retryLimit = retries
    configuration.timeoutIntervalForRequest = stall
    configuration.syncsBeforeMove = false
    return DownloadSession(configuration: configuration, delegate: delegate, delegateQueue: queue)
}

extension Integration {
    @Suite("URLSession-shaped API")
    struct APITests {
        @Test("Delegate: didWriteData coalesced and monotonic, then didFinishDownloadingTo, then one didComplete")
        func delegateOrder() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 61)
            // 4 connections × 2 MiB/s: about one second.
            server.serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let concurrent = OperationQueue()
            concurrent.maxConcurrentOperationCount = 4
            let recorder = Recorder(moveTo: scratch.file("moved"))
            let task = session(recorder, queue: concurrent).downloadTask(with: server.url("/f"))
            #expect(task.state == .suspended)
            task.resume()
            #expect(task.state == .running)
            #expect(await recorder.waitForCompletion())
            let calls = recorder.recorded
            let writes = calls.compactMap { call -> (Int64, Int64, Int64)? in
                if case .wrote(let a, let b, let c) = call { return (a, b, c) } else { return nil }
            }
            #expect(writes.count >= 3 && writes.count <= 40, "\(writes.count) didWriteData calls for ~1 s")
            var total: Int64 = 0
            for (delta, written, expected) in writes {
                #expect(delta > 0)
                total += delta
                #expect(written == total)
                #expect(expected == content.size)
            }
            #expect(total == content.size)
            #expect(calls.suffix(2) == [.finished, .completed(nil)])
            #expect(calls.filter { if case .completed = $0 { true } else { false } }.count == 1)
            #expect(!recorder.overlapped, "delegate calls overlapped on a concurrent queue")
            #expect(recorder.digestDuringFinish == content.sha256)
            #expect(try SHA256.hex(ofFileAt: scratch.file("moved").path) == content.sha256)
            #expect(task.state == .completed)
            #expect(task.countOfBytesReceived == content.size)
            #expect(task.countOfBytesExpectedToReceive == content.size)
            #expect(task.progress.completedUnitCount == content.size && task.progress.totalUnitCount == content.size)
            // The response describes the resource as a plain GET would; the range answer is kept.
            let response = try #require(task.response as? HTTPURLResponse)
            #expect(response.statusCode == 200)
            #expect(response.value(forHTTPHeaderField: "Content-Length") == String(content.size))
            #expect(response.value(forHTTPHeaderField: "Content-Range") == nil)
            #expect(task.probeResponse?.statusCode == 206)
            #expect(task.probeResponse?.value(forHTTPHeaderField: "Content-Range") != nil)
            #expect(task.error == nil)
        }

        @Test("A file the delegate did not move is deleted after didFinishDownloadingTo")
        func unmovedFileDeleted() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 100_000, seed: 62)), at: "/f")
            let temp = Scratch()
            defer { temp.cleanup() }
            var configuration = DownloadSession.Configuration()
            configuration.temporaryDirectory = temp.url
            let recorder = Recorder()
            let task = DownloadSession(configuration: configuration, delegate: recorder).downloadTask(with: server.url("/f"))
            task.resume()
            #expect(await recorder.waitForCompletion())
            #expect(recorder.digestDuringFinish == GeneratedContent(size: 100_000, seed: 62).sha256)
            #expect(temp.contents.isEmpty, "left behind: \(temp.contents)")
        }

        @Test("Completion handler: the file is valid during the call, the response is there")
        func completionHandler() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 63)
            server.serve(ServedFile(content: content), at: "/f")
            let recorder = Recorder()
            let result: (String?, Int?, (any Error)?) = await withCheckedContinuation { continuation in
                let task = session(recorder).downloadTask(with: URLRequest(url: server.url("/f"))) { location, response, error in
                    let digest = location.flatMap { try? SHA256.hex(ofFileAt: $0.path) }
                    continuation.resume(returning: (digest, (response as? HTTPURLResponse)?.statusCode, error))
                }
                task.resume()
            }
            #expect(result.0 == content.sha256)
            #expect(result.1 == 200)
            #expect(result.2 == nil)
            #expect(recorder.recorded.isEmpty, "a completion-handler task also called the delegate")
        }

        @Test("Suspend pauses every segment; resume continues to the exact bytes")
        func suspendAndResume() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 64)
            server.serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let recorder = Recorder(moveTo: scratch.file("out"))
            // A stall timeout shorter than the pause: a paused transfer must not count as stalled.
            let task = session(recorder, stall: 1).downloadTask(with: server.url("/f"))
            task.resume()
            try await Task.sleep(for: .milliseconds(400))
            task.suspend()
            #expect(task.state == .suspended)
            try await Task.sleep(for: .milliseconds(300))
            let paused = task.countOfBytesReceived
            try await Task.sleep(for: .milliseconds(2500))
            #expect(task.countOfBytesReceived == paused, "bytes arrived while suspended")
            #expect(paused > 0 && paused < content.size)
            let requestsBefore = server.requests.count
            task.resume()
            #expect(await recorder.waitForCompletion())
            #expect(recorder.recorded.last == .completed(nil))
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == content.sha256)
            // The connections kept their ranges: nothing already on disk was asked for again
            // (each range may reach across its seams by the overlap). The bytes asked for are
            // counted once however many requests asked: an endgame twin asks again for the
            // unwritten rest of a range still in flight, which was not on disk.
            let after = server.requests.dropFirst(requestsBefore)
            var ranges: [Range<Int64>] = []
            for request in after {
                let bounds = (request.range ?? "").dropFirst("bytes=".count).split(separator: "-").compactMap { Int64($0) }
                ranges.append(bounds.count == 2 ? bounds[0]..<(bounds[1] + 1) : 0..<content.size)
            }
            var asked: Int64 = 0
            var reached: Int64 = 0
            for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                let from = max(range.lowerBound, reached)
                if range.upperBound > from { asked += range.upperBound - from }
                reached = max(reached, range.upperBound)
            }
            let overlap = Int64(2 * (16 << 10))
            #expect(asked <= content.size - paused + Int64(after.count) * overlap,
                    "asked for \(asked) bytes after resuming with \(paused) of \(content.size) on disk")
        }

        @Test("cancel() completes the task with URLError.cancelled")
        func cancel() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 64 << 20, seed: 65), bytesPerSecond: 1 << 20), at: "/f")
            let recorder = Recorder()
            let task = session(recorder).downloadTask(with: server.url("/f"))
            task.resume()
            try await Task.sleep(for: .milliseconds(200))
            task.cancel()
            #expect(await recorder.waitForCompletion())
            #expect(recorder.recorded.last == .completed("\(URLError.Code.cancelled.rawValue)"))
            #expect((task.error as? URLError)?.code == .cancelled)
            #expect(task.state == .completed)
        }

        @Test("URLSession's download-task error table: HTTP status to URLError", arguments: [
            (401, URLError.Code.userAuthenticationRequired), (403, .noPermissionsToReadFile),
            (407, .userAuthenticationRequired), (404, .fileDoesNotExist), (410, .fileDoesNotExist),
            (500, .fileDoesNotExist), (416, .fileDoesNotExist),
        ])
        func table1(status: Int, expected: URLError.Code) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 1000, seed: 66),
                                    faults: [Fault(.status(status, retryAfter: nil), times: 10)]), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let recorder = Recorder()
            let task = session(recorder, retries: 0).downloadTask(with: server.url("/f"))
            task.resume()
            #expect(await recorder.waitForCompletion())
            let error = try #require(task.error as? URLError)
            #expect(error.code == expected)
            #expect((task.response as? HTTPURLResponse)?.statusCode == status, "the HTTP response is on the task")
            #expect(!recorder.recorded.contains(.finished), "an error body was delivered as the file")
        }

        @Test("async download(for:) with a URLRequest sends its headers on every segment")
        func asyncWithRequest() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 67)
            server.serve(ServedFile(content: content), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var request = URLRequest(url: server.url("/f"))
            request.setValue("yes", forHTTPHeaderField: "X-Test")
            let (location, response) = try await session(nil).download(for: request, to: scratch.file("out"))
            #expect(response.statusCode == 200)
            #expect(try SHA256.hex(ofFileAt: location.path) == content.sha256)
            let requests = server.requests
            #expect(requests.count >= 4)
            #expect(requests.allSatisfy { $0.headers["x-test"] == "yes" })
            #expect(requests.allSatisfy { $0.headers["user-agent"]?.hasPrefix("haul/") == true })
        }

        @Test("A POST with a body downloads as one request without Range, and cannot be resumed")
        func postDownload() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 69)
            server.serve(ServedFile(content: content), at: "/export")
            var post = URLRequest(url: server.url("/export"))
            post.httpMethod = "POST"
            post.httpBody = Data("format=csv&rows=all".utf8)
            post.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
            let (location, response) = try await session(nil).download(for: post)
            defer { try? FileManager.default.removeItem(at: location) }
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            #expect(try SHA256.hex(ofFileAt: location.path) == content.sha256)
            let requests = server.requests
            #expect(requests.count == 1)
            #expect(requests.first?.method == "POST")
            #expect(requests.first?.range == nil)
            #expect(requests.first?.headers["content-length"] == "19")
            #expect(requests.first?.headers["content-type"] == "application/x-www-form-urlencoded")
            // A HEAD has nothing to download.
            var head = URLRequest(url: server.url("/export"))
            head.httpMethod = "HEAD"
            await #expect(throws: HaulError.self) { try await session(nil).download(for: head) }
        }

        @Test("events: progress, then finished with the file the consumer owns")
        func events() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 68)
            server.serve(ServedFile(content: content, bytesPerSecond: 4 << 20), at: "/f")
            let task = session(nil).downloadTask(with: server.url("/f"))
            let stream = task.events
            task.resume()
            var progress: [Int64] = []
            var location: URL?
            for try await event in stream {
                switch event {
                case .progress(let written, let expected):
                    progress.append(written)
                    #expect(expected == content.size)
                case .finished(let url): location = url
                case .resumed: Issue.record("not resumed")
                }
            }
            #expect(!progress.isEmpty && progress == progress.sorted())
            let file = try #require(location)
            #expect(try SHA256.hex(ofFileAt: file.path) == content.sha256)
            try FileManager.default.removeItem(at: file)
        }

        @Test("32 tasks on one session at once: exact bytes each")
        func thirtyTwoTasks() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let contents = (0..<32).map { GeneratedContent(size: Int64(1 << 20) + Int64($0) * 4099, seed: 100 + UInt64($0)) }
            for (index, content) in contents.enumerated() { server.serve(ServedFile(content: content), at: "/\(index)") }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var configuration = DownloadSession.Configuration()
            configuration.minimumSplitSize = 256 << 10
            configuration.syncsBeforeMove = false
            let shared = DownloadSession(configuration: configuration)
            try await downloadConcurrently(contents, from: server, session: shared, into: scratch)
            }

        @Test("Resume data this version cannot use fails with a clear error, not a crash")
        func resumeDataNotYet() async throws {
            let recorder = Recorder()
            let task = session(recorder).downloadTask(withResumeData: Data([1, 2, 3]))
            task.resume()
            #expect(await recorder.waitForCompletion())
            guard case .resumeDataInvalid = task.error as? HaulError else {
                Issue.record("unexpected \(String(describing: task.error))")
                return
            }
        }

        @Test("finishTasksAndInvalidate: the running task finishes, then the delegate is let go; new tasks fail")
        func finishAndInvalidate() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 69)
            server.serve(ServedFile(content: content, bytesPerSecond: 4 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var recorder: Recorder? = Recorder(moveTo: scratch.file("out"))
            weak let released = recorder
            let session = session(recorder)
            let task = session.downloadTask(with: server.url("/f"))
            task.resume()
            session.finishTasksAndInvalidate()
            #expect(await recorder!.waitForCompletion())
            #expect(recorder!.recorded.last == .completed(nil))
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == content.sha256)
            recorder = nil
            try await Task.sleep(for: .milliseconds(100))
            #expect(released == nil, "the session still holds its delegate")
            #expect(session.delegate == nil)
            let error: (any Error)? = await withCheckedContinuation { continuation in
                session.downloadTask(with: server.url("/f")) { _, _, error in continuation.resume(returning: error) }.resume()
            }
            #expect(error as? HaulError == .sessionInvalidated)
        }

        @Test("invalidateAndCancel cancels running tasks")
        func invalidateAndCancel() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 32 << 20, seed: 70), bytesPerSecond: 1 << 20), at: "/f")
            let recorder = Recorder()
            let session = session(recorder)
            let task = session.downloadTask(with: server.url("/f"))
            task.resume()
            try await Task.sleep(for: .milliseconds(200))
            session.invalidateAndCancel()
            #expect(await recorder.waitForCompletion())
            #expect((task.error as? URLError)?.code == .cancelled)
            try await Task.sleep(for: .milliseconds(100))
            #expect(session.delegate == nil)
        }

        @Test("Task identifiers are unique within a session; tasks start suspended")
        func identifiers() {
            let session = session(nil)
            let a = session.downloadTask(with: URL(string: "http://127.0.0.1:1/a")!)
            let b = session.downloadTask(with: URL(string: "http://127.0.0.1:1/b")!)
            #expect(a.taskIdentifier != b.taskIdentifier)
            #expect(a.state == .suspended && b.state == .suspended)
            #expect(a.originalRequest?.url?.path == "/a")
            #expect(a.countOfBytesExpectedToReceive == NSURLSessionTransferSizeUnknown)
        }
    }
}
