import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("Faults: retries, stalls, lying servers")
    struct FaultTests {
        @Test("Connections reset mid-segment are retried from their cursor; exact bytes")
        func resets() async throws {
            // Paced (16 MiB/s per connection) so that what the server counts as sent is what the
            // client read: unpaced, a cancelled twin leaves megabytes in loopback socket buffers.
            let file = ServedFile(content: GeneratedContent(size: 8 << 20, seed: 21), etag: "\"r\"",
                                  bytesPerSecond: 16 << 20,
                                  faults: [Fault(.resetAfter(bytes: 100_000), times: 3, minimumOffset: 1)])
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 8))
            let resumed = server.requests.compactMap(\.range).filter { spec in
                // Each request reaches 16 KiB back: a reset after 100 000 bytes leaves the cursor 100 000 - 16 KiB
                // in, and the retry starts 16 KiB before that.
                spec.hasPrefix("bytes=") && !spec.hasPrefix("bytes=0-")
                    && (Int64(spec.dropFirst(6).split(separator: "-")[0]) ?? 0) % (1 << 20) == 100_000 - 32_768
            }
            // Which requests the three resets hit depends on arrival order (an endgame twin of a
            // segment that has not started repeats its request), but a reset segment resumes at
            // its cursor, and nothing is fetched twice beyond the overlaps and twins.
            #expect(resumed.count >= 1, "expected a request resuming 100 000 bytes into a segment: \(server.requests)")
            #expect(server.bytesSent < file.content.size * 3 / 2, "sent \(server.bytesSent) bytes")
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
            // Throttled, so the 503 arrives long before the other segments end: otherwise an endgame
            // twin of the segment may race its 503 and finish first (correct, but no Retry-After).
            let file = ServedFile(content: GeneratedContent(size: 4 << 20, seed: 23), bytesPerSecond: 4 << 20,
                                  faults: [Fault(.status(503, retryAfter: 1), times: 1, minimumOffset: 1)])
            let started = ContinuousClock.now
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 4))
            // The segment that got the 503 (whichever asked first) is asked again, with the same range.
            let counts = Dictionary(grouping: server.requests.compactMap(\.range), by: { $0 }).mapValues(\.count)
            #expect(counts.filter { $0.key != "bytes=0-" && $0.value == 2 }.count == 1, "\(counts)")
            #expect(ContinuousClock.now - started >= .seconds(1), "Retry-After was not honoured")
        }

        @Test("A wrong Content-Range is refused and retried; exact bytes")
        func wrongContentRangeRetried() async throws {
            let file = ServedFile(content: GeneratedContent(size: 4 << 20, seed: 24),
                                  faults: [Fault(.wrongContentRange, times: 1, minimumOffset: 1)])
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 4))
            #expect(server.requests.allSatisfy { $0.range != nil }, "one wrong answer should not cost the ranges")
        }

        @Test("A server whose ranges are always wrong is fetched as one stream without Range; exact bytes")
        func wrongContentRangeAlways() async throws {
            let file = ServedFile(content: GeneratedContent(size: 4 << 20, seed: 24),
                                  faults: [Fault(.wrongContentRange, times: 1000, minimumOffset: 1)])
            let (server, _) = try await downloadAndVerify(file, session: testSession(connections: 4))
            #expect(server.requests.contains { $0.range == nil })
        }

        @Test("With restarts off, a server whose ranges are always wrong fails naming both ranges; no file left")
        func wrongContentRangeMessage() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 4 << 20, seed: 24),
                                    faults: [Fault(.wrongContentRange, times: 1000, minimumOffset: 1)]), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = 4
            configuration.adaptsConnectionCount = false  // segments, even from a fast loopback server
            configuration.restartsWhenRemoteFileChanges = false
            configuration.syncsBeforeMove = false
            do {
                _ = try await DownloadSession(configuration: configuration).download(from: server.url("/f"),
                                                                                     to: scratch.file("out"))
                Issue.record("the download should have failed")
            } catch let error as HaulError {
                guard case .invalidContentRange(let expected, let received) = error else {
                    Issue.record("wrong error: \(error)")
                    return
                }
                #expect(expected.hasPrefix("bytes ") && received.hasPrefix("bytes "))
                #expect(expected != received)
                #expect(error.description.contains("wrong byte range"))
            }
            #expect(scratch.contents.isEmpty, "a failed download left files: \(scratch.contents)")
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
