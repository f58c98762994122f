import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Synchronization
import Testing

/// Logs every delegate call by name and answers questions as told.
final class EventLog: DownloadSessionDelegate, Sendable {
    private let log = Mutex<[String]>([])
    private let files = Mutex<[String]>([])
    let redirect: @Sendable (URLRequest) -> URLRequest?
    let credentials: @Sendable (URLAuthenticationChallenge) -> (URLSession.AuthChallengeDisposition, URLCredential?)
    let ended = DispatchSemaphore(value: 0)
    let invalid = DispatchSemaphore(value: 0)
    let waiting = DispatchSemaphore(value: 0)

    init(redirect: @escaping @Sendable (URLRequest) -> URLRequest? = { $0 },
         credentials: @escaping @Sendable (URLAuthenticationChallenge) -> (URLSession.AuthChallengeDisposition, URLCredential?)
            = { _ in (.performDefaultHandling, nil) }) {
        self.redirect = redirect
        self.credentials = credentials
    }

    var events: [String] { log.withLock { $0 } }
    /// SHA-256 of each file handed to `didFinishDownloadingTo`, read during the call.
    var finishedDigests: [String] { files.withLock { $0 } }
    private func note(_ event: String) { log.withLock { $0.append(event) } }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didFinishDownloadingTo location: URL) {
        let digest = (try? SHA256.hex(ofFileAt: location.path)) ?? "unreadable"
        files.withLock { $0.append(digest) }
        note("finished")
    }
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didWriteData bytesWritten: Int64,
                         totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64) {
        if events.last != "progress" { note("progress") }
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask, didCompleteWithError error: (any Error)?) {
        note(error == nil ? "completed" : "failed \((error as? URLError)?.code.rawValue ?? -1)")
        ended.signal()
    }
    func downloadSession(_ session: DownloadSession, didCreateTask task: DownloadTask) { note("created \(task.taskIdentifier)") }
    func downloadSession(_ session: DownloadSession, taskIsWaitingForConnectivity task: DownloadTask) {
        note("waiting")
        waiting.signal()
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask, willPerformHTTPRedirection response: HTTPURLResponse,
                         newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        note("redirect \(response.statusCode) \(request.url?.path ?? "")")
        completionHandler(redirect(request))
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask, didReceive challenge: URLAuthenticationChallenge,
                         completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        note("challenge \(challenge.protectionSpace.authenticationMethod) \(challenge.protectionSpace.realm ?? "-") \(challenge.previousFailureCount)")
        let (disposition, credential) = credentials(challenge)
        completionHandler(disposition, credential)
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask, didFinishCollecting metrics: DownloadTaskMetrics) {
        note("metrics \(metrics.transactionMetrics.count)")
    }
    func downloadSession(_ session: DownloadSession, didBecomeInvalidWithError error: (any Error)?) {
        note("invalid")
        invalid.signal()
    }

    /// Waits (off the cooperative pool) for a semaphore.
    static func wait(_ semaphore: DispatchSemaphore, seconds: Double = 30) async -> Bool {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: semaphore.wait(timeout: .now() + seconds) == .success) }
        }
    }
}

private func paritySession(_ delegate: (any DownloadSessionDelegate)? = nil,
                           _ change: (inout DownloadSession.Configuration) -> Void = { _ in }) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = 4
    configuration.adaptsConnectionCount = false  // segments, even from a fast loopback server
    configuration.syncsBeforeMove = false
    change(&configuration)
    return DownloadSession(configuration: configuration, delegate: delegate)
}

extension Integration {
    @Suite("URLSession parity")
    struct ParityTests {
        @Test("An empty file answers 200 with Content-Length 0, so Apple's 2xx check passes; the probe's 416 is kept")
        func emptyFileIsTwoHundred() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 0, seed: 1)), at: "/empty")
            let (location, response) = try await paritySession().download(from: server.url("/empty"))
            defer { try? FileManager.default.removeItem(at: location) }
            let http = try #require(response as? HTTPURLResponse)
            #expect((200...299).contains(http.statusCode) && http.statusCode == 200)
            #expect(http.value(forHTTPHeaderField: "Content-Length") == "0")
            #expect(try Data(contentsOf: location).isEmpty)
        }

        @Test("Sessions list every task not ended (also ones not resumed); tasks are Hashable by identity")
        func listingAndIdentity() async throws {
            let session = paritySession()
            session.sessionDescription = "porting"
            #expect(session.sessionDescription == "porting")
            let first = session.downloadTask(with: URL(string: "http://127.0.0.1:9/a")!)
            let second = session.downloadTask(with: URL(string: "http://127.0.0.1:9/b")!)
            #expect(first == first && first != second && Set([first, second, first]).count == 2)
            #expect(first.priority == DownloadTask.defaultPriority)
            first.priority = DownloadTask.highPriority
            #expect(first.priority == 1 && DownloadTask.lowPriority == 0)
            first.countOfBytesClientExpectsToReceive = 1234
            #expect(first.countOfBytesClientExpectsToReceive == 1234 && second.countOfBytesClientExpectsToReceive == -1)
            let (data, upload, downloads) = await session.tasks
            #expect(data.isEmpty && upload.isEmpty && Set(downloads) == [first, second])
            let listed = await withCheckedContinuation { continuation in
                session.getTasksWithCompletionHandler { _, _, downloads in continuation.resume(returning: downloads) }
            }
            #expect(Set(listed) == [first, second])
        }

        @Test("earliestBeginDate: the task is running at once but its first request waits for the date")
        func earliestBeginDate() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 1 << 20, seed: 151)
            server.serve(ServedFile(content: content), at: "/f")
            let log = EventLog()
            let session = paritySession(log)
            let task = session.downloadTask(with: server.url("/f"))
            task.earliestBeginDate = Date().addingTimeInterval(0.6)
            let started = Date()
            task.resume()
            #expect(task.state == .running)
            try await Task.sleep(for: .milliseconds(300))
            #expect(server.requests.isEmpty, "a request went out before earliestBeginDate")
            #expect(await EventLog.wait(log.ended))
            #expect(Date().timeIntervalSince(started) >= 0.6)
            #expect(log.finishedDigests == [content.sha256])
            // URLSession's order at the end: the file, then the metrics, then completion.
            let ending = Array(log.events.suffix(3))
            #expect(ending.count == 3 && ending[0] == "finished" && ending[1].hasPrefix("metrics ") && ending[2] == "completed",
                    "\(log.events)")
        }

        @Test("download(from:delegate:): the task's delegate hears progress and metrics; the file is the caller's")
        func perTaskDelegate() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 6 << 20, seed: 152)
            server.serve(ServedFile(content: content, bytesPerSecond: 8 << 20), at: "/f")
            let sessionLog = EventLog()
            let taskLog = EventLog()
            let session = paritySession(sessionLog)
            let (location, response) = try await session.download(from: server.url("/f"), delegate: taskLog)
            defer { try? FileManager.default.removeItem(at: location) }
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            #expect(try SHA256.hex(ofFileAt: location.path) == content.sha256)
            try await Task.sleep(for: .milliseconds(100))
            #expect(taskLog.events.contains("progress"))
            #expect(taskLog.events.suffix(2).first?.hasPrefix("metrics ") == true)
            #expect(taskLog.events.last == "completed")
            #expect(!taskLog.events.contains("finished") && !sessionLog.events.contains("finished"),
                    "the async API owns the file: no delegate is handed it")
            #expect(sessionLog.events.first?.hasPrefix("created ") == true)
            #expect(sessionLog.events.last == "completed")
        }

        @Test("Metrics come from curl: one transaction per request with real dates and byte counts")
        func metrics() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 153)
            server.serve(ServedFile(content: content), at: "/f")
            final class Metrics: DownloadSessionDelegate, Sendable {
                let value = Mutex<DownloadTaskMetrics?>(nil)
                func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didFinishDownloadingTo location: URL) {}
                func downloadSession(_ session: DownloadSession, task: DownloadTask, didFinishCollecting metrics: DownloadTaskMetrics) {
                    value.withLock { $0 = metrics }
                }
            }
            let collector = Metrics()
            let (location, _) = try await paritySession(collector).download(from: server.url("/f"))
            defer { try? FileManager.default.removeItem(at: location) }
            #expect(try SHA256.hex(ofFileAt: location.path) == content.sha256)
            try await Task.sleep(for: .milliseconds(100))
            let metrics = try #require(collector.value.withLock { $0 })
            #expect(metrics.transactionMetrics.count >= 4)
            #expect(metrics.redirectCount == 0)
            let received = metrics.transactionMetrics.reduce(Int64(0)) { $0 + $1.countOfResponseBodyBytesReceived }
            #expect(received >= content.size)
            for transaction in metrics.transactionMetrics {
                #expect(transaction.response?.statusCode == 206)
                #expect(transaction.response?.value(forHTTPHeaderField: "content-range")?.hasPrefix("bytes ") == true)
                #expect(transaction.response === transaction.response, "made once, then the same object")
                #expect(transaction.request.value(forHTTPHeaderField: "Range")?.hasPrefix("bytes=") == true)
                #expect(transaction.remoteAddress == "127.0.0.1")
                let start = try #require(transaction.responseStartDate)
                let end = try #require(transaction.responseEndDate)
                let fetchStart = try #require(transaction.fetchStartDate)
                #expect(fetchStart <= start && start <= end)
                #expect(metrics.taskInterval.start <= fetchStart)
                #expect(transaction.networkProtocolName == "http/1.1")
            }
        }

        @Test("finishTasksAndInvalidate: a task made before runs when resumed after; then didBecomeInvalidWithError")
        func invalidationKeepsEarlierTasks() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 154)
            server.serve(ServedFile(content: content), at: "/f")
            let log = EventLog()
            let session = paritySession(log)
            let early = session.downloadTask(with: server.url("/f"))
            session.finishTasksAndInvalidate()
            early.resume()
            #expect(await EventLog.wait(log.ended))
            #expect(log.finishedDigests == [content.sha256])
            #expect(await EventLog.wait(log.invalid))
            #expect(log.events.last == "invalid")
            #expect(session.delegate == nil)
            let late = session.downloadTask(with: server.url("/f"))
            late.resume()
            try await Task.sleep(for: .milliseconds(200))
            #expect(late.state == .completed)
            #expect(late.error as? HaulError == .sessionInvalidated)
        }

        @Test("Errors carry Foundation's userInfo: failing URL and its string, the underlying error, resume data by Apple's names")
        func errorUserInfo() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let missing = server.url("/missing")
            do {
                _ = try await paritySession().download(from: missing)
                Issue.record("a 404 succeeded")
            } catch let error as URLError {
                #expect(error.code == .fileDoesNotExist)
                #expect(error.userInfo["NSErrorFailingURLStringKey"] as? String == missing.absoluteString)
                #expect(error.failingURL == missing)
                #expect(error.userInfo[NSUnderlyingErrorKey] != nil)
                #expect(error.downloadTaskResumeData == nil)
            }
            let content = GeneratedContent(size: 8 << 20, seed: 155)
            server.serve(ServedFile(content: content, etag: "\"p\"", faults: [Fault(.resetAfter(bytes: 1 << 20), times: 50,
                                                                                      minimumOffset: 1)]), at: "/f")
            do {
                _ = try await paritySession { $0.retryLimit = 0 }.download(from: server.url("/f"))
                Issue.record("a reset download succeeded")
            } catch let error as URLError {
                let data = try #require(error.downloadTaskResumeData)
                #expect(error.userInfo[NSURLSessionDownloadTaskResumeData] as? Data == data)
                let resume = try ResumeData(data)
                #expect(FileManager.default.fileExists(atPath: resume.tempFile.path), "the partial file is kept for the resume data")
                removeTempFiles(of: resume)
            }
        }

        @Test("A failed download nobody can resume leaves no temp file behind")
        func failedTempFileRemoved() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 156)
            server.serve(ServedFile(content: content, etag: "\"p\"", faults: [Fault(.resetAfter(bytes: 1 << 20), times: 50,
                                                                                      minimumOffset: 1)]), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = paritySession { $0.retryLimit = 0; $0.temporaryDirectory = scratch.url }
            let task = session.downloadTask(with: server.url("/f"))
            task.resume()
            for _ in 0..<100 where task.state != .completed { try await Task.sleep(for: .milliseconds(50)) }
            try await Task.sleep(for: .milliseconds(200))
            #expect(task.state == .completed && task.error != nil)
            #expect(scratch.contents.isEmpty, "left in the temporary directory: \(scratch.contents)")
        }

        @Test("Configuration as URLSession's: typed httpAdditionalHeaders are sent, the per-host limit, .ephemeral writes no journal")
        func configurationNames() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 157)
            server.serve(ServedFile(content: content, etag: "\"e\"", bytesPerSecond: 8 << 20), at: "/f")
            var configuration = DownloadSession.Configuration.ephemeral
            configuration.httpAdditionalHeaders = ["X-Token": "abc", "X-Number": 7]
            configuration.httpMaximumConnectionsPerHost = 3
            #expect(configuration.connectionsPerHost == 3)
            #expect(configuration.additionalHeaders == ["X-Token": "abc", "X-Number": "7"])
            #expect(configuration.httpAdditionalHeaders?["X-Token"] as? String == "abc")
            configuration.syncsBeforeMove = false
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            let session = DownloadSession(configuration: configuration)
            let task = Task { try await session.download(from: server.url("/f"), to: destination) }
            try await Task.sleep(for: .milliseconds(250))
            #expect(!FileManager.default.fileExists(atPath: DownloadSession.journalURL(for: destination).path),
                    "an ephemeral session keeps no journal")
            _ = try await task.value
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)
            #expect(server.requests.allSatisfy { $0.headers["x-token"] == "abc" && $0.headers["x-number"] == "7" })
        }

        @Test("download(resumeFrom:delegate:) continues cancelled work and returns (URL, URLResponse)")
        func asyncResumeWithDelegate() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 6 << 20, seed: 158)
            server.serve(ServedFile(content: content, etag: "\"r\"", bytesPerSecond: 3 << 20), at: "/f")
            let session = paritySession()
            let task = session.downloadTask(with: server.url("/f"))
            task.resume()
            for _ in 0..<100 where task.countOfBytesReceived < 1 << 20 { try await Task.sleep(for: .milliseconds(20)) }
            let blob = try #require(await task.cancelByProducingResumeData())
            let log = EventLog()
            let (location, response) = try await session.download(resumeFrom: blob, delegate: log)
            defer { try? FileManager.default.removeItem(at: location) }
            let http = try #require(response as? HTTPURLResponse)
            #expect(http.statusCode == 200 && http.value(forHTTPHeaderField: "Content-Length") == String(content.size),
                    "a resumed task's response describes the whole resource too")
            #expect(try SHA256.hex(ofFileAt: location.path) == content.sha256)
            try await Task.sleep(for: .milliseconds(100))
            #expect(log.events.last == "completed")
        }

        @Test("A finished file gets the mode new files get (0666 less the umask), as curl's and Foundation's do; partial files stay private")
        func publishedMode() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 1 << 20, seed: 159)
            server.serve(ServedFile(content: content), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let destination = scratch.file("out")
            _ = try await paritySession().download(from: server.url("/f"), to: destination)
            let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Umask:") })
            let umask = try #require(Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces), radix: 8))
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: destination.path)[.posixPermissions] as? Int)
            #expect(mode == 0o666 & ~umask)
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)
        }
    }
}
