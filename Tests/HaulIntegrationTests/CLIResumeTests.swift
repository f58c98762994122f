import Foundation
import Haul
import HaulTestServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    @Suite("The haul command: interruption and resume")
    struct CLIResumeTests {
        @Test("Ctrl-C writes the journal and says how to resume; the same command resumes to the exact bytes")
        func interruptAndResume() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 12 << 20, seed: 81)
            server.serve(ServedFile(content: content, etag: "\"i\"", bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("f.bin").path
            let arguments = ["get", server.url("/f").absoluteString, "-o", output, "-x", "4"]
            let first = try RunningHaul(arguments)
            try await Task.sleep(for: .milliseconds(700))
            kill(first.process.processIdentifier, SIGINT)
            let interrupted = await first.finish()
            #expect(interrupted.status == 130, "stderr: \(interrupted.stderr)")
            #expect(interrupted.stderr.contains("run the same command again to resume"))
            let journal = try ResumeData(#require(DownloadSession.journal(for: scratch.file("f.bin"))))
            #expect(journal.bytesDone > 0)
            let before = server.requests.count
            let second = try RunningHaul(arguments)
            let resumed = await second.finish()
            #expect(resumed.status == 0, "stderr: \(resumed.stderr)")
            #expect(resumed.stderr.contains("resuming: ") && resumed.stderr.contains("of 12.0 MiB already downloaded"), "stderr: \(resumed.stderr)")
            // The speed counts only what this run fetched, and says what was there.
            #expect(resumed.stdout.contains("were already there)"), "stdout: \(resumed.stdout)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
            #expect(!server.requests[before...].contains { $0.range == "bytes=0-" })
            #expect(scratch.contents == ["f.bin"])
        }

        @Test("A journal written by a download from what is now a mirror: the URL's file is what arrives, never the mirror's")
        func journalFromAMirror() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 12 << 20, seed: 82)
            let other = GeneratedContent(size: 12 << 20, seed: 83)
            server.serve(ServedFile(content: content, etag: "\"a\"", bytesPerSecond: 2 << 20), at: "/u")
            server.serve(ServedFile(content: other, etag: "\"m\"", bytesPerSecond: 2 << 20), at: "/m")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("f.bin").path
            let first = try RunningHaul(["get", server.url("/m").absoluteString, "-o", output, "-x", "4"])
            try await Task.sleep(for: .milliseconds(700))
            kill(first.process.processIdentifier, SIGINT)
            #expect(await first.finish().status == 130)
            let second = try runHaul(["get", server.url("/u").absoluteString, "--mirror", server.url("/m").absoluteString,
                                      "-o", output, "-x", "4"])
            #expect(second.status == 0, "stderr: \(second.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
            #expect(server.requests.contains { $0.path == "/u" })
        }

        @Test("kill -9 at random points, 20 rounds: every rerun resumes; the file is exact; little is fetched twice")
        func killNineRounds() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let connections = 8
            let content = GeneratedContent(size: 48 << 20, seed: 82)
            // 8 connections × 3 MiB/s ≈ 24 MiB/s: the file takes about two seconds undisturbed.
            server.serve(ServedFile(content: content, etag: "\"k\"", bytesPerSecond: 3 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("k.bin")
            let arguments = ["get", server.url("/f").absoluteString, "-o", output.path, "-x", "\(connections)", "-q"]
            let journalURL = DownloadSession.journalURL(for: output)
            var worstTwice: Int64 = 0
            var rounds = 0
            var finished = false
            let deadline = ContinuousClock.now + .seconds(90)
            while !finished, ContinuousClock.now < deadline {
                let firstRequest = server.requests.count
                let previouslySent = server.sentRanges()
                let run = try RunningHaul(arguments)
                if rounds < 20 {
                    try await Task.sleep(for: .milliseconds(Int.random(in: 60...220)))
                    kill(run.process.processIdentifier, SIGKILL)
                }
                let result = await run.finish()
                rounds += 1
                // Bytes sent in this round that an earlier round had already been sent.
                let twice = overlap(server.sentRanges(from: firstRequest), previouslySent)
                worstTwice = max(worstTwice, twice)
                if result.status == 0 {
                    finished = true
                } else {
                    // Killed: Process reports the signal number.
                    #expect(result.status == SIGKILL, "round \(rounds): \(result.stderr)")
                }
            }
            #expect(finished, "not finished after \(rounds) rounds")
            #expect(rounds >= 21)
            #expect(try SHA256.hex(ofFileAt: output.path) == content.sha256)
            #expect(!FileManager.default.fileExists(atPath: journalURL.path))
            // Journal steps are 1 MiB per segment; what was in flight on the socket adds a little.
            let bound = Int64(connections) * (1 << 20) + Int64(connections) * (512 << 10)
            #expect(worstTwice <= bound, "fetched twice in one round: \(worstTwice) bytes (bound \(bound))")
            print("kill -9: \(rounds) rounds, worst bytes fetched twice in a round: \(worstTwice)")
        }

        @Test("--no-resume starts over; -c refuses a journal for another URL")
        func noResumeAndContinue() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 83)
            server.serve(ServedFile(content: content, etag: "\"n\"", bytesPerSecond: 2 << 20), at: "/f")
            server.serve(ServedFile(content: content, etag: "\"n\""), at: "/other")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("n.bin").path
            let run = try RunningHaul(["get", server.url("/f").absoluteString, "-o", output, "-x", "4"])
            try await Task.sleep(for: .milliseconds(500))
            kill(run.process.processIdentifier, SIGTERM)
            #expect(await run.finish().status == 130)

            let refused = try runHaul(["get", server.url("/other").absoluteString, "-o", output, "-c"])
            #expect(refused.status == 4, "a journal for another URL is a local problem")
            #expect(refused.stderr.contains("cannot continue") && refused.stderr.contains("/f"))

            let before = server.requests.count
            let fresh = try runHaul(["get", server.url("/other").absoluteString, "-o", output, "--no-resume", "-q"])
            #expect(fresh.status == 0, "stderr: \(fresh.stderr)")
            #expect(server.requests[before...].first?.range == "bytes=0-")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
        }
    }
}

/// Bytes of `ranges` that fall inside `earlier` (each list may overlap itself).
private func overlap(_ ranges: [Range<Int64>], _ earlier: [Range<Int64>]) -> Int64 {
    let merged = merge(earlier)
    var total: Int64 = 0
    for range in merge(ranges) {
        for old in merged where old.overlaps(range) {
            total += min(old.upperBound, range.upperBound) - max(old.lowerBound, range.lowerBound)
        }
    }
    return total
}

private func merge(_ ranges: [Range<Int64>]) -> [Range<Int64>] {
    var out: [Range<Int64>] = []
    for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
        if let last = out.last, range.lowerBound <= last.upperBound {
            out[out.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
        } else {
            out.append(range)
        }
    }
    return out
}
