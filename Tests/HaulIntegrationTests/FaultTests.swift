import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Faults: retries, stalls, lying servers")
    struct FaultTests {
        @Test("Connections reset mid-segment are retried from their cursor; exact bytes")
        func resets() async throws {
            let file = ServedFile(content: GeneratedContent(size: 8 << 20, seed: 21), etag: "\"r\"",
                                  faults: [Fault(.resetAfter(bytes: 100_000), times: 3, minimumOffset: 1)])
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 8))
            let resumed = server.requests.compactMap(\.range).filter { spec in
                // A retry starts past its segment's first byte: 100 000 bytes in.
                spec.hasPrefix("bytes=") && !spec.hasPrefix("bytes=0-") && (Int64(spec.dropFirst(6).split(separator: "-")[0]) ?? 0) % (1 << 20) == 100_000
            }
            // Three resets, each resumed at the cursor (an endgame twin may start there too).
            #expect(resumed.count >= 3, "expected requests resuming 100 000 bytes into a segment: \(server.requests)")
        }

        @Test("A stalled single stream is dropped after the stall timeout and retried; exact bytes")
        func stall() async throws {
            let file = ServedFile(content: GeneratedContent(size: 4 << 20, seed: 22), supportsRanges: false,
                                  faults: [Fault(.stallAfter(bytes: 50_000), times: 1)])
            let started = ContinuousClock.now
            let (server, _) = try await downloadAndVerify(file, session: testSession(stallSeconds: 1))
            #expect(server.requests.count == 2)
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .seconds(1) && elapsed < .seconds(15))
        }

        @Test("A stalled segment does not hold the download: the endgame twin finishes it first")
        func stalledSegmentRescued() async throws {
            let file = ServedFile(content: GeneratedContent(size: 4 << 20, seed: 22), etag: "\"t\"",
                                  faults: [Fault(.stallAfter(bytes: 50_000), times: 1, minimumOffset: 1)])
            let started = ContinuousClock.now
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 4, stallSeconds: 30))
            #expect(server.requests.count > 4)
            #expect(ContinuousClock.now - started < .seconds(10), "the stalled connection held the download")
        }

        @Test("503 with Retry-After on a segment is retried after the delay; exact bytes")
        func serviceUnavailable() async throws {
            let file = ServedFile(content: GeneratedContent(size: 4 << 20, seed: 23),
                                  faults: [Fault(.status(503, retryAfter: 1), times: 1, minimumOffset: 1)])
            let started = ContinuousClock.now
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 4))
            #expect(server.requests.filter { $0.range == "bytes=1048576-2097151" }.count == 2)
            #expect(ContinuousClock.now - started >= .seconds(1), "Retry-After was not honoured")
        }

        @Test("A wrong Content-Range fails with an error naming both ranges, leaves no file; the next try works")
        func wrongContentRangeMessage() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 4 << 20, seed: 24),
                                    faults: [Fault(.wrongContentRange, times: 1, minimumOffset: 1)]), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            do {
                _ = try await testSession(connections: 4).download(from: server.url("/f"), to: scratch.file("out"))
                Issue.record("the download should have failed")
            } catch let error as HaulError {
                guard case .invalidContentRange(let expected, let received) = error else {
                    Issue.record("wrong error: \(error)")
                    return
                }
                #expect(expected == "bytes 1048576-2097151/4194304")
                #expect(received == "bytes 1048577-2097152/4194304")
                #expect(error.description.contains("wrong byte range"))
            }
            #expect(scratch.contents.isEmpty, "a failed download left files: \(scratch.contents)")
            // The fault applied once: the same download now succeeds with exact bytes.
            _ = try await testSession(connections: 4).download(from: server.url("/f"), to: scratch.file("out"))
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == GeneratedContent(size: 4 << 20, seed: 24).sha256)
        }

        @Test("404 fails with the status and writes no error page")
        func notFound() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            do {
                _ = try await testSession().download(from: server.url("/missing"), to: scratch.file("out"))
                Issue.record("expected a failure")
            } catch let error as URLError {
                #expect(error.code == .fileDoesNotExist)
                #expect(error.userInfo[HaulError.httpStatusCodeKey] as? Int == 404)
                #expect(error.localizedDescription.contains("HTTP 404"))
            }
            #expect(scratch.contents.isEmpty)
        }

        @Test("A refused port fails at once with URLError.cannotConnectToHost")
        func refused() async throws {
            let server = try await TestServer.start()
            let url = server.url("/gone")
            await server.shutdown()
            let started = ContinuousClock.now
            do {
                _ = try await testSession().download(from: url, to: Scratch().file("x"))
                Issue.record("expected a failure")
            } catch let error as URLError {
                #expect(error.code == .cannotConnectToHost)
            }
            #expect(ContinuousClock.now - started < .seconds(5))
        }

        @Test("Cancelling the Swift task cancels the download")
        func taskCancellation() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 64 << 20, seed: 25), bytesPerSecond: 1 << 20), at: "/slow")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let session = testSession()
            let task = Task { try await session.download(from: server.url("/slow"), to: scratch.file("out")) }
            try await Task.sleep(for: .milliseconds(300))
            task.cancel()
            do {
                _ = try await task.value
                Issue.record("expected cancellation")
            } catch let error as URLError {
                #expect(error.code == .cancelled)
            }
            #expect(scratch.contents.isEmpty)
        }
    }
}
