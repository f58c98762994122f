import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
@testable import HaulDaemon
import HaulTestServer
import Testing

/// Records a background session's delegate calls.
private final class BackgroundRecorder: DownloadSessionDelegate, @unchecked Sendable {
    // Unchecked: `lock` guards the arrays.
    private let lock = NSLock()
    private var finishedFiles: [(description: String?, path: String, sha256: String?)] = []
    private var completions: [(description: String?, error: String?)] = []
    private var eventsDone = 0

    var finished: [(description: String?, path: String, sha256: String?)] { lock.withLock { finishedFiles } }
    var completed: [(description: String?, error: String?)] { lock.withLock { completions } }
    var finishedEvents: Int { lock.withLock { eventsDone } }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didFinishDownloadingTo location: URL) {
        let digest = try? SHA256.hex(ofFileAt: location.path)
        lock.withLock { finishedFiles.append((downloadTask.taskDescription, location.path, digest)) }
    }

    func downloadSession(_ session: DownloadSession, task: DownloadTask, didCompleteWithError error: (any Error)?) {
        lock.withLock { completions.append((task.taskDescription, error.map { "\($0)" })) }
    }

    func downloadSessionDidFinishEvents(forBackgroundSession session: DownloadSession) {
        lock.withLock { eventsDone += 1 }
    }
}

private func background(_ identifier: String, state: URL, delegate: BackgroundRecorder) -> DownloadSession {
    var configuration = DownloadSession.Configuration.background(withIdentifier: identifier)
    configuration.daemonStateDirectory = state.path
    return DownloadSession(configuration: configuration, delegate: delegate)
}

private func eventually(_ seconds: Double = 20, _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try await Task.sleep(for: .milliseconds(100))
    }
    return condition()
}

extension Integration {
    @Suite("Background sessions: tasks that run in haul daemon")
    struct BackgroundSessionTests {
        @Test("A background task runs in the daemon and reports through the delegate; the file is exact")
        func runsInDaemon() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 600)
            server.serve(ServedFile(content: content, etag: "\"b\""), at: "/bg.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, _) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let recorder = BackgroundRecorder()
            let session = background("app.one", state: scratch.file("state"), delegate: recorder)
            let task = session.downloadTask(with: server.url("/bg.bin"))
            task.taskDescription = "first"
            task.resume()
            #expect(try await eventually { recorder.completed.count >= 1 })
            // Exactly once: the session's own listing of its tasks never makes a second follower.
            try await Task.sleep(for: .milliseconds(500))
            #expect(recorder.completed.count == 1, "\(recorder.completed)")
            #expect(recorder.completed.first?.error == nil, "\(recorder.completed)")
            #expect(recorder.finished.first?.description == "first")
            #expect(recorder.finished.first?.sha256 == content.sha256)
            #expect(recorder.finished.first?.path == scratch.file("root/bg.bin").path)
            // Completion handlers are refused for background sessions, with a reason.
            let refused = session.downloadTask(with: server.url("/bg.bin")) { _, _, error in
                #expect(error != nil)
            }
            refused.resume()
            #expect(try await eventually { refused.state == .completed })
            #expect("\(refused.error.map { "\($0)" } ?? "")".contains("delegate"))
        }

        @Test("Tasks that ended while no process was attached are delivered to the next one, exactly once")
        func reattach() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 601)
            server.serve(ServedFile(content: content, etag: "\"r\""), at: "/r.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            // An earlier process of the app queued these, then went away.
            let done = try #require(try await rpc.call("aria2.addUri", [[server.url("/r.bin").absoluteString],
                ["haul-session": "app.two", "haul-description": "while away"]]) as? String)
            let failed = try #require(try await rpc.call("aria2.addUri", [[server.url("/missing.bin").absoluteString],
                ["haul-session": "app.two", "haul-description": "broken"]]) as? String)
            _ = try await rpc.waitStopped(done)
            _ = try await rpc.waitStopped(failed)
            let recorder = BackgroundRecorder()
            let session = background("app.two", state: scratch.file("state"), delegate: recorder)
            #expect(try await eventually { recorder.finishedEvents == 1 })
            #expect(recorder.finished.map(\.description) == ["while away"])
            #expect(recorder.finished.first?.sha256 == content.sha256)
            #expect(Set(recorder.completed.map(\.description)) == ["while away", "broken"])
            #expect(recorder.completed.first { $0.description == "broken" }?.error != nil)
            _ = session
            // A third process of the app hears nothing more: each event went out once.
            let later = BackgroundRecorder()
            let again = background("app.two", state: scratch.file("state"), delegate: later)
            #expect(try await eventually { later.finishedEvents == 1 })
            #expect(later.finished.isEmpty && later.completed.isEmpty)
            #expect(await again.allTasks.isEmpty)
        }

        @Test("Without a daemon, a background task fails saying how to start one")
        func noDaemon() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let recorder = BackgroundRecorder()
            var configuration = DownloadSession.Configuration.background(withIdentifier: "app.none")
            configuration.daemonStateDirectory = scratch.file("nothing").path
            let session = DownloadSession(configuration: configuration, delegate: recorder)
            session.downloadTask(with: URL(string: "http://127.0.0.1:9/x")!).resume()
            #expect(try await eventually { recorder.completed.count == 1 })
            #expect(recorder.completed.first?.error?.contains("haul daemon --dir") == true)
        }

        @Test("Every header field of a background task's request reaches the server, not only one")
        func everyHeaderGoes() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 601)
            server.serve(ServedFile(content: content, etag: "\"h\""), at: "/h.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, _) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let recorder = BackgroundRecorder()
            let session = background("app.headers", state: scratch.file("state"), delegate: recorder)
            var request = URLRequest(url: server.url("/h.bin"))
            request.setValue("one", forHTTPHeaderField: "X-One")
            request.setValue("two", forHTTPHeaderField: "X-Two")
            request.setValue("three", forHTTPHeaderField: "X-Three")
            session.downloadTask(with: request).resume()
            #expect(try await eventually { recorder.completed.count >= 1 })
            #expect(recorder.finished.first?.sha256 == content.sha256)
            #expect(!server.requests.isEmpty)
            #expect(server.requests.allSatisfy {
                $0.headers["x-one"] == "one" && $0.headers["x-two"] == "two" && $0.headers["x-three"] == "three"
            }, "\(server.requests.map(\.headers))")
        }
    }
}
