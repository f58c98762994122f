import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Testing

/// The README's delegate example, as written there.
private final class Saver: DownloadSessionDelegate, @unchecked Sendable {
    // Unchecked: `failure` is written on the delegate queue before `done` is signalled, read after.
    let target: URL
    let done = DispatchSemaphore(value: 0)
    private(set) var failure: (any Error)?

    init(target: URL) { self.target = target }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                         didFinishDownloadingTo location: URL) {
        do {
            try FileManager.default.moveItem(at: location, to: target)
        } catch {
            failure = error
        }
    }

    func downloadSession(_ session: DownloadSession, task: DownloadTask, didCompleteWithError error: (any Error)?) {
        if let error { failure = error }
        done.signal()
    }
}

extension Integration {
    @Suite("The README's library examples")
    struct ReadmeExampleTests {
        @Test("The delegate example saves the bytes, and reports a failed move instead of losing it silently")
        func delegateExample() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 71)
            server.serve(ServedFile(content: content), at: "/big.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }

            let saver = Saver(target: scratch.file("big.iso"))
            let session = DownloadSession(configuration: .default, delegate: saver, delegateQueue: nil)
            session.downloadTask(with: server.url("/big.iso")).resume()
            await waitOffThePool(saver.done)
            #expect(saver.failure == nil)
            #expect(try SHA256.hex(ofFileAt: scratch.file("big.iso").path) == content.sha256)

            // The target exists now: the move fails and the example says so.
            let again = Saver(target: scratch.file("big.iso"))
            let second = DownloadSession(configuration: .default, delegate: again, delegateQueue: nil)
            second.downloadTask(with: server.url("/big.iso")).resume()
            await waitOffThePool(again.done)
            #expect(again.failure != nil)
            #expect(try SHA256.hex(ofFileAt: scratch.file("big.iso").path) == content.sha256)
        }

        @Test("The events example sees progress and the finished file in place")
        func eventsExample() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 72)
            server.serve(ServedFile(content: content), at: "/big.iso")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = DownloadSession(configuration: .default)
            let task = session.downloadTask(with: URLRequest(url: server.url("/big.iso")), to: scratch.file("big.iso"))
            let events = task.events
            task.resume()
            var sawProgress = false
            var saved: URL?
            for try await event in events {
                switch event {
                case .progress: sawProgress = true
                case .resumed: break
                case .finished(let location): saved = location
                }
            }
            #expect(sawProgress)
            #expect(saved?.path == scratch.file("big.iso").path)
            #expect(try SHA256.hex(ofFileAt: scratch.file("big.iso").path) == content.sha256)
        }
    }
}

/// Waits for `semaphore` on a Dispatch thread, never blocking the cooperative pool.
private func waitOffThePool(_ semaphore: DispatchSemaphore) async {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            semaphore.wait()
            continuation.resume()
        }
    }
}
