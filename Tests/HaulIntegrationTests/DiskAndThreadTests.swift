import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Haul
import HaulTestServer
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Syscalls whose `pwrite` misbehaves: short writes, EINTR, then ENOSPC after a byte budget.
private func flakySyscalls(budget: Int64?, maxPerCall: Int, interruptEvery: Int) -> Syscalls {
    let state = Mutex<(written: Int64, calls: Int)>((0, 0))
    var calls = Syscalls.system
    let real = Syscalls.system.pwrite
    calls.pwrite = { fd, buffer, count, offset in
        let decision: Int = state.withLock { state in
            state.calls += 1
            if interruptEvery > 0, state.calls % interruptEvery == 0 { return -2 }
            if let budget, state.written >= budget { return -3 }
            return min(count, maxPerCall)
        }
        switch decision {
        case -2: errno = EINTR; return -1
        case -3: errno = ENOSPC; return -1
        default:
            let written = real(fd, buffer, decision, offset)
            if written > 0 { state.withLock { $0.written += Int64(written) } }
            return written
        }
    }
    return calls
}

private func session(syscalls: Syscalls, connections: Int = 8) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = connections
    configuration.syncsBeforeMove = false
    return DownloadSession(configuration: configuration, syscalls: syscalls)
}

extension Integration {
    @Suite("Disk and threads")
    struct DiskAndThreadTests {
        @Test("Short writes and EINTR from pwrite are retried; exact bytes")
        func shortWritesAndInterrupts() async throws {
            let file = ServedFile(content: GeneratedContent(size: 6 << 20, seed: 31))
            try await downloadAndVerify(file, session: session(syscalls: flakySyscalls(budget: nil, maxPerCall: 3000,
                                                                                       interruptEvery: 7)))
        }

        @Test("ENOSPC stops the download with diskFull, keeps what was written, and resumes once there is space")
        func diskFull() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 32)
            server.serve(ServedFile(content: content, etag: "\"d\""), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let flaky = flakySyscalls(budget: 3 << 20, maxPerCall: .max, interruptEvery: 0)
            do {
                _ = try await session(syscalls: flaky).download(from: server.url("/f"), to: scratch.file("out"))
                Issue.record("the download should have failed")
            } catch let error as HaulError {
                guard case .diskFull(let shown, let resumeData) = error else { Issue.record("wrong error: \(error)"); return }
                #expect(error.description.contains("no space left"))
                #expect(shown == scratch.file("out").path, "the message names the user's path")
                // The partial temp file is kept, with real bytes in it.
                let path = try ResumeData(#require(resumeData)).tempFile.path
                #expect(FileManager.default.fileExists(atPath: path))
                let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
                let prefix = try handle.read(upToCount: 4096) ?? Data()
                #expect(Array(prefix) == content.bytes(0..<4096))
                #expect(!FileManager.default.fileExists(atPath: scratch.file("out").path))
                // Space again: the resume data finishes the same file, without fetching it all again.
                let blob = try #require(resumeData)
                #expect(HaulError.resumeData(from: error) == blob)
                let before = server.requests.count
                let (location, _) = try await testSession(connections: 8).download(resumeFrom: blob)
                #expect(location.path == scratch.file("out").path)
                #expect(try SHA256.hex(ofFileAt: location.path) == content.sha256)
                #expect(!server.requests[before...].contains { $0.range == "bytes=0-" })
            }
        }

        @Test("fallocate: a full disk fails at once, before the body; no support leaves a sized file that works",
              arguments: [ENOSPC, EOPNOTSUPP])
        func preallocation(failure: Int32) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 33)
            server.serve(ServedFile(content: content, bytesPerSecond: 8 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var calls = Syscalls.system
            calls.fallocate = { _, _ in errno = failure; return -1 }
            let started = ContinuousClock.now
            do {
                _ = try await session(syscalls: calls).download(from: server.url("/f"), to: scratch.file("out"))
                #expect(failure == EOPNOTSUPP, "a full disk was not reported")
                #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == content.sha256)
            } catch let error as HaulError {
                guard case .insufficientSpace(let path, let needed, _) = error else { Issue.record("wrong error: \(error)"); return }
                #expect(path == scratch.file("out").path && needed == content.size)
                #expect(failure == ENOSPC)
                #expect(scratch.contents.isEmpty, "the space was not given back: \(scratch.contents)")
                // Found before the body: the 8 MiB at 8 MiB/s per connection would take far longer to fail.
                #expect(ContinuousClock.now - started < .milliseconds(500))
                #expect(server.bytesSent < content.size / 2)
            }
        }

        @Test("8 downloads × 16 connections share one queue: threads stay bounded")
        func threadsStayBounded() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let files = (0..<8).map { GeneratedContent(size: 16 << 20, seed: 40 + UInt64($0)) }
            for (index, content) in files.enumerated() {
                // 16 connections at 2 MiB/s each: every download runs for about half a second.
                server.serve(ServedFile(content: content, bytesPerSecond: 2 << 20), at: "/\(index)")
            }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = testSession(connections: 16)
            let before = threadCount()
            let peak = Mutex(0)
            let sampler = Task {
                while !Task.isCancelled {
                    let now = threadCount()
                    peak.withLock { $0 = max($0, now) }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            try await downloadConcurrently(files, from: server, session: session, into: scratch)
            sampler.cancel()
            #expect(server.connectionCount >= 8 * 16)
            let observed = peak.withLock { $0 }
            // 128 connections; a thread per connection would add over a hundred.
            #expect(observed - before < 16, "threads grew from \(before) to \(observed)")
        }

        @Test("onReceivedAll is told once, when every byte is in but before the file is in place; not for a download that fails before")
        func receivedAllIsToldOnce() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 4242)
            server.serve(ServedFile(content: content), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = 4
            configuration.adaptsConnectionCount = false
            configuration.syncsBeforeMove = true
            let session = DownloadSession(configuration: configuration)
            let destination = scratch.file("f")
            // What the hook saw each time: whether the file was in place yet.
            let told = Mutex<[Bool]>([])
            let task = session.downloadTask(with: URLRequest(url: server.url("/f")), to: destination)
            task.onReceivedAll = { told.withLock { $0.append(FileManager.default.fileExists(atPath: destination.path)) } }
            let events = task.events
            task.resume()
            for try await _ in events {}
            #expect(told.withLock { $0 } == [false])
            #expect(try SHA256.hex(ofFileAt: destination.path) == content.sha256)

            let failedTold = Mutex(0)
            let failing = session.downloadTask(with: URLRequest(url: server.url("/missing")), to: scratch.file("m"))
            failing.onReceivedAll = { failedTold.withLock { $0 += 1 } }
            let failingEvents = failing.events
            failing.resume()
            await #expect(throws: (any Error).self) { for try await _ in failingEvents {} }
            #expect(failedTold.withLock { $0 } == 0)
        }
    }
}

/// Threads of this process right now.
private func threadCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
}
