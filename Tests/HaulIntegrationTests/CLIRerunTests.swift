import Foundation
import Haul
import HaulTestServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// A file haul finished carries a record of its bytes and version; running the command
    /// again keeps it only while the bytes are still those and the server still has that version.
    @Suite("The haul command: running it again after it finished",
           .enabled(if: FinishedRecord.canBeKept(in: NSTemporaryDirectory()), "the temporary directory keeps no user attributes"))
    struct CLIRerunTests {
        @Test("Ctrl-C in a batch, then the same command: finished files kept, the one under way resumed, the rest fetched")
        func interruptedBatch() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let small = (0..<3).map { GeneratedContent(size: 300_000, seed: 900 + UInt64($0)) }
            for (index, content) in small.enumerated() {
                server.serve(ServedFile(content: content, etag: "\"s\(index)\""), at: "/s\(index).bin")
            }
            let slow = GeneratedContent(size: 12 << 20, seed: 910)
            server.serve(ServedFile(content: slow, etag: "\"slow\"", bytesPerSecond: 2 << 20), at: "/slow.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let directory = scratch.file("out")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
            let list = ["/s0.bin", "/s1.bin", "/slow.bin", "/s2.bin"].map { server.url($0).absoluteString }
            try (list.joined(separator: "\n") + "\n").write(to: scratch.file("list.txt"), atomically: true, encoding: .utf8)
            let arguments = ["get", "-i", scratch.file("list.txt").path, "-d", directory.path, "-j", "1", "-x", "2"]

            let first = try RunningHaul(arguments)
            let journal = DownloadSession.journalURL(for: directory.appendingPathComponent("slow.bin"))
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: journal.path) {
                try await Task.sleep(for: .milliseconds(50))
            }
            try await Task.sleep(for: .milliseconds(300))
            kill(first.process.processIdentifier, SIGINT)
            let interrupted = await first.finish()
            #expect(interrupted.status == 130, "stderr: \(interrupted.stderr)")
            #expect(DownloadSession.journal(for: directory.appendingPathComponent("slow.bin")) != nil)

            let before = server.requests.count
            let again = try runHaul(arguments)
            #expect(again.status == 0, "stderr: \(again.stderr)")
            for name in ["s0.bin", "s1.bin"] {
                #expect(again.stderr.contains("\(name) is already here: an earlier run downloaded it"), "stderr: \(again.stderr)")
            }
            #expect(again.stderr.contains("slow.bin: resuming: "), "stderr: \(again.stderr)")
            for (index, content) in small.enumerated() {
                #expect(try SHA256.hex(ofFileAt: directory.appendingPathComponent("s\(index).bin").path) == content.sha256)
            }
            #expect(try SHA256.hex(ofFileAt: directory.appendingPathComponent("slow.bin").path) == slow.sha256)
            // The kept files were asked about (one byte, and their ends), never fetched whole.
            let asked = server.requests[before...].filter { $0.path == "/s0.bin" || $0.path == "/s1.bin" }
            #expect(!asked.isEmpty && asked.allSatisfy { $0.range != nil && $0.range != "bytes=0-" }, "\(asked.map(\.range))")
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
                    == ["s0.bin", "s1.bin", "s2.bin", "slow.bin"])

            // A third time everything is kept, quietly with -q, and nothing is fetched.
            let sent = server.bytesSent
            let third = try runHaul(arguments + ["-q"])
            #expect(third.status == 0, "stderr: \(third.stderr)")
            #expect(server.bytesSent - sent < 1 << 20, "sent \(server.bytesSent - sent) bytes")
        }

        /// What happens between the first run and the second, and what the second must do.
        struct Change: Sendable, CustomTestStringConvertible {
            var name: String
            /// How the file is served the first time and the second.
            var first: ServedFile
            var second: ServedFile
            /// What happens to the file on disk between the runs.
            var local: LocalChange = .none
            enum LocalChange: Sendable { case none, byte, hardLink, anotherOwner, checksumFile(String) }
            var extraArguments: [String] = []
            /// 0: kept; else refused with this exit status, the file left as it was. And what the message says.
            var status: Int32
            var message: String
            var testDescription: String { name }
        }

        static let content = GeneratedContent(size: 400_000, seed: 920)
        static let other = GeneratedContent(size: 400_000, seed: 921)
        static let date = "Sun, 06 Nov 1994 08:49:37 GMT"
        static let changes: [Change] = [
            Change(name: "same ETag, same bytes", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\""), status: 0,
                   message: "already here: an earlier run downloaded it and the server still has that version (same length and ETag"),
            Change(name: "no ETag, the same Last-Modified", first: ServedFile(content: content, lastModified: date),
                   second: ServedFile(content: content, lastModified: date), status: 0, message: "same length and Last-Modified"),
            Change(name: "a new ETag", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: other, etag: "\"b\""), status: 4,
                   message: "exists; use --force to overwrite it (an earlier run downloaded it, but the server's file has changed (its ETag is now \"b\", not \"a\"))"),
            Change(name: "a new Last-Modified", first: ServedFile(content: content, lastModified: date),
                   second: ServedFile(content: content, lastModified: "Mon, 07 Nov 1994 08:49:37 GMT"), status: 4,
                   message: "its Last-Modified is now Mon, 07 Nov 1994 08:49:37 GMT"),
            Change(name: "another length", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: GeneratedContent(size: 400_001, seed: 920), etag: "\"a\""), status: 4,
                   message: "the server's file is now 400001 bytes, not 400000"),
            Change(name: "a lying server: the same ETag over other bytes", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: other, etag: "\"a\""), status: 4,
                   message: "but its first 64.0 KiB differ from the server's"),
            Change(name: "no validator at all", first: ServedFile(content: content), second: ServedFile(content: content),
                   status: 4, message: "the server gives no ETag or Last-Modified to show it still has that version"),
            Change(name: "a byte changed on disk", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\""), local: .byte, status: 4,
                   message: "(an earlier run downloaded it, but its bytes have changed since)"),
            Change(name: "another digest given", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\""), extraArguments: ["--sha256", other.sha256], status: 4,
                   message: "its SHA-256 is \(content.sha256), not the \(other.sha256) given"),
            Change(name: "a weak ETag alone", first: ServedFile(content: content, etag: "W/\"a\""),
                   second: ServedFile(content: content, etag: "W/\"a\""), status: 4,
                   message: "the server gives only a weak ETag and no Last-Modified"),
            Change(name: "a weak ETag and the same Last-Modified", first: ServedFile(content: content, etag: "W/\"a\"", lastModified: date),
                   second: ServedFile(content: content, etag: "W/\"a\"", lastModified: date), status: 0,
                   message: "same length and Last-Modified"),
            Change(name: "a new weak ETag, the same Last-Modified", first: ServedFile(content: content, etag: "W/\"a\"", lastModified: date),
                   second: ServedFile(content: content, etag: "W/\"b\"", lastModified: date), status: 4,
                   message: "its ETag is now W/\"b\", not W/\"a\""),
            Change(name: "no byte ranges", first: ServedFile(content: content, etag: "\"a\"", supportsRanges: false),
                   second: ServedFile(content: content, etag: "\"a\"", supportsRanges: false), status: 4,
                   message: "the server does not serve byte ranges, so its bytes cannot be compared with the file's"),
            Change(name: "another name for the file", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\""), local: .hardLink, status: 4,
                   message: "(an earlier run downloaded it, but it has 2 hard links)"),
            Change(name: "another user's file", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\""), local: .anotherOwner, status: 4,
                   message: "(an earlier run downloaded it, but it belongs to another user)"),
            Change(name: "a checksum file with an MD5", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\""),
                   local: .checksumFile("d41d8cd98f00b204e9800998ecf8427e  f.bin\n"), status: 64,
                   message: "'d41d8cd98f00b204e9800998ecf8427e' is not a SHA-256 digest"),
            Change(name: "no longer on the server", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\"", faults: [Fault(.status(404, retryAfter: nil), times: 10)]),
                   status: 2, message: "(an earlier run downloaded it, but the server now answers HTTP 404)"),
            Change(name: "the server gone", first: ServedFile(content: content, etag: "\"a\""),
                   second: ServedFile(content: content, etag: "\"a\"", faults: [Fault(.status(503, retryAfter: nil), times: 10)]),
                   status: 2, message: "(an earlier run downloaded it, but the server now answers HTTP 503)"),
        ]

        /// Serves `file` at /f.bin and downloads it once to f.bin in `scratch`; returns the output
        /// and the arguments that downloaded it, to run again.
        static func downloadedOnce(_ file: ServedFile, from server: TestServer, into scratch: Scratch) throws
            -> (output: String, arguments: [String]) {
            server.serve(file, at: "/f.bin")
            let output = scratch.file("f.bin").path
            let arguments = ["get", server.url("/f.bin").absoluteString, "-o", output, "-x", "2"]
            let first = try runHaul(arguments + ["-q"])
            #expect(first.status == 0, "stderr: \(first.stderr)")
            return (output, arguments)
        }

        /// Changes one byte in the middle of the file at `path`, in place (its record stays).
        static func changeByte(of path: String) {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            var byte: UInt8 = 0x55
            #expect(pwrite(fd, &byte, 1, 200_000) == 1)
            close(fd)
        }

        // A file given to another user needs root to make.
        @Test("A finished file is kept on a rerun only while it is the server's version",
              arguments: changes.filter { getuid() == 0 || $0.name != "another user's file" })
        func rerun(change: Change) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (path, arguments) = try Self.downloadedOnce(change.first, from: server, into: scratch)
            let output = URL(fileURLWithPath: path)
            var extra = change.extraArguments
            switch change.local {
            case .none: break
            case .byte:
                Self.changeByte(of: output.path)
            case .anotherOwner:
                #expect(chown(output.path, 65534, 65534) == 0)
            case .hardLink:
                #expect(link(output.path, scratch.file("other-name").path) == 0)
            case .checksumFile(let line):
                try Data(line.utf8).write(to: scratch.file("other-name"))
                extra += ["--checksum-file", scratch.file("other-name").path]
            }
            let onDisk = try Data(contentsOf: output)
            server.serve(change.second, at: "/f.bin")
            let second = try runHaul(arguments + extra)
            #expect(second.status == change.status, "stderr: \(second.stderr)")
            #expect(second.stderr.contains(change.message), "stderr: \(second.stderr)")
            #expect(try Data(contentsOf: output) == onDisk, "the file is left as it was")
            if change.status == 0 {
                // Kept only as a whole version of the server's file.
                #expect(try SHA256.hex(ofFileAt: output.path) == change.second.content.sha256)
            }
            #expect(Set(scratch.contents).subtracting(["other-name"]) == ["f.bin"])
        }

        @Test("Ctrl-C while the server keeps the rerun's question waiting ends the run at once")
        func interruptedProbe() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (output, arguments) = try Self.downloadedOnce(ServedFile(content: Self.content, etag: "\"a\""), from: server,
                                                              into: scratch)
            server.serve(ServedFile(content: Self.content, etag: "\"a\"", firstByteDelay: .seconds(20)), at: "/f.bin")
            let second = try RunningHaul(arguments)
            try await Task.sleep(for: .milliseconds(500))
            let interrupted = ContinuousClock.now
            kill(second.process.processIdentifier, SIGINT)
            let result = await second.finish()
            #expect(result.status == 130, "stderr: \(result.stderr)")
            #expect(ContinuousClock.now - interrupted < .seconds(5), "took \(ContinuousClock.now - interrupted)")
            #expect(try SHA256.hex(ofFileAt: output) == Self.content.sha256)
        }

        @Test("Only haul's own finished file of the same URL is kept; without a hash there is no record")
        func notAnEarlierDownload() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: Self.content, etag: "\"a\""), at: "/a.bin")
            server.serve(ServedFile(content: Self.other, etag: "\"b\""), at: "/b.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("f.bin").path
            #expect(try runHaul(["get", server.url("/a.bin").absoluteString, "-o", output, "-q"]).status == 0)
            // Another URL to the same name: the usual refusal, with nothing about an earlier run.
            let otherURL = try runHaul(["get", server.url("/b.bin").absoluteString, "-o", output])
            #expect(otherURL.status == 4, "stderr: \(otherURL.stderr)")
            #expect(otherURL.stderr.contains("\(output) exists; use --force to overwrite it")
                    && !otherURL.stderr.contains("earlier run"), "stderr: \(otherURL.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == Self.content.sha256)
            // --no-hash leaves no record, so there is nothing to show the file is the server's.
            #expect(try runHaul(["get", server.url("/b.bin").absoluteString, "-o", output, "--force", "--no-hash", "-q"]).status == 0)
            let unrecorded = try runHaul(["get", server.url("/b.bin").absoluteString, "-o", output])
            #expect(unrecorded.status == 4 && !unrecorded.stderr.contains("earlier run"), "stderr: \(unrecorded.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == Self.other.sha256)
        }

        @Test("-c on a file an earlier run finished: complete by its record, with no digest from the server")
        func continueFinished() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (output, arguments) = try Self.downloadedOnce(ServedFile(content: Self.content, etag: "\"a\""), from: server,
                                                              into: scratch)
            let continued = try runHaul(arguments + ["-c"])
            #expect(continued.status == 0, "stderr: \(continued.stderr)")
            #expect(continued.stderr.contains("is already complete (an earlier run downloaded it"), "stderr: \(continued.stderr)")
            // Its middle changed: the record no longer vouches for it, and -c cannot tell.
            Self.changeByte(of: output)
            let changed = try runHaul(arguments + ["-c"])
            #expect(changed.status == 4 && changed.stderr.contains("cannot tell whether"), "stderr: \(changed.stderr)")
        }
    }
}
