import Foundation
import Haul
import HaulTestServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// Nothing on disk is lost: `-c` never starts over, a download that cannot end with the
    /// server's file leaves the bytes it began with, and one whose name was taken keeps its bytes.
    @Suite("The haul command: what is on disk is kept")
    struct CLIContinueTests {
        @Test("Another program's partial file whose download fails its digest is given back as it was found")
        func adoptedFileGivenBack() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 600_000, seed: 131)
            server.serve(ServedFile(content: content, etag: "\"a\""), at: "/a.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("a.bin").path
            let url = server.url("/a.bin").absoluteString
            // The first and last 64 KiB are the server's; a byte between is not (the samples
            // cannot see it, the digest does).
            var mine = Data(content.bytes(0..<300_000))
            mine[150_000] ^= 0xFF
            let cases: [(digest: String, expectation: String)] = [
                (content.sha256, "the right digest, wrong bytes in the middle"),
                (String(repeating: "7", count: 64), "a digest nothing has"),
            ]
            for (digest, expectation) in cases {
                try mine.write(to: URL(fileURLWithPath: output))
                let result = try runHaul(["get", url, "-o", output, "-c", "-x", "2", "--sha256", digest])
                #expect(result.status == 3, "\(expectation): stderr: \(result.stderr)")
                #expect(result.stderr.contains("continuing another program's partial file"), "stderr: \(result.stderr)")
                #expect(result.stderr.contains("\(output) is left as it was found"), "stderr: \(result.stderr)")
                #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == mine, "\(expectation)")
                #expect(scratch.contents == ["a.bin"], "\(expectation)")
            }
            // Without -c the download is the server's file.
            let fresh = try runHaul(["get", url, "-o", output, "--force", "-q"])
            #expect(fresh.status == 0, "stderr: \(fresh.stderr)")
            #expect(try SHA256.hex(ofFileAt: output) == content.sha256)
        }

        @Test("A file that takes the name while the download runs is left alone; the finished bytes wait beside it")
        func nameTakenMeanwhile() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 136)
            server.serve(ServedFile(content: content, etag: "\"m\"", bytesPerSecond: 1 << 20), at: "/m.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("m.bin")
            let arguments = ["get", server.url("/m.bin").absoluteString, "-o", output.path, "-x", "2"]
            let run = try RunningHaul(arguments)
            try await Task.sleep(for: .milliseconds(300))
            let theirs = Data("a file the user made meanwhile".utf8)
            try theirs.write(to: output)
            let taken = await run.finish()
            #expect(taken.status == 4, "stderr: \(taken.stderr)")
            #expect(taken.stderr.contains("the download is kept beside it") && taken.stderr.contains("--force"), "stderr: \(taken.stderr)")
            #expect(try Data(contentsOf: output) == theirs)
            #expect(DownloadSession.journal(for: output) != nil)
            // Still taken: refused again, nothing lost.
            let again = try runHaul(arguments)
            #expect(again.status == 4, "stderr: \(again.stderr)")
            #expect(try Data(contentsOf: output) == theirs)
            #expect(DownloadSession.journal(for: output) != nil)
            // Free: the same command finishes with what was kept.
            try FileManager.default.removeItem(at: output)
            let before = server.bytesSent
            let done = try runHaul(arguments + ["-q"])
            #expect(done.status == 0, "stderr: \(done.stderr)")
            #expect(try SHA256.hex(ofFileAt: output.path) == content.sha256)
            #expect(server.bytesSent - before < 1 << 20, "fetched \(server.bytesSent - before) bytes again")
            #expect(scratch.contents == ["m.bin"])
        }

        @Test("--no-resume beside a running download of the same file leaves that download's journal alone")
        func noResumeBesideARunningDownload() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 137)
            server.serve(ServedFile(content: content, etag: "\"r\"", bytesPerSecond: 1 << 20), at: "/r.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("r.bin")
            let arguments = ["get", server.url("/r.bin").absoluteString, "-o", output.path, "-x", "2"]
            let first = try RunningHaul(arguments)
            var journal: Data?
            for _ in 0..<50 where journal == nil {
                try await Task.sleep(for: .milliseconds(100))
                journal = DownloadSession.journal(for: output)
            }
            #expect(journal != nil, "the running download wrote no journal")
            let second = try runHaul(arguments + ["--no-resume"])
            #expect(second.status == 4 && second.stderr.contains("another download is writing"), "stderr: \(second.stderr)")
            #expect(DownloadSession.journal(for: output) != nil, "the running download's journal was removed")
            kill(first.process.processIdentifier, SIGKILL)
            _ = await first.finish()
            let resumed = try runHaul(arguments)
            #expect(resumed.status == 0 && resumed.stderr.contains("resuming: "), "stderr: \(resumed.stderr)")
            #expect(try SHA256.hex(ofFileAt: output.path) == content.sha256)
        }

        @Test("A run stopped after its file was linked into place, before the journal went: the next run finishes the cleanup")
        func stoppedWhilePlacing() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 4 << 20, seed: 140)
            server.serve(ServedFile(content: content, etag: "\"p\"", bytesPerSecond: 1 << 20), at: "/p.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("p.bin")
            let arguments = ["get", server.url("/p.bin").absoluteString, "-o", output.path, "-x", "2"]
            let run = try RunningHaul(arguments)
            try await Task.sleep(for: .milliseconds(500))
            kill(run.process.processIdentifier, SIGINT)
            #expect(await run.finish().status == 130)
            #expect(DownloadSession.journal(for: output) != nil)
            // What the last step leaves when it is killed between its link and its unlinks: the
            // partial file, whole, has a second name, the destination's.
            let partial = scratch.file(".p.bin.haul-part")
            let handle = try FileHandle(forUpdating: partial)
            try handle.write(contentsOf: Data(content.bytes(0..<(4 << 20))))
            try handle.close()
            #expect(link(partial.path, output.path) == 0)
            let before = server.requests.count
            let again = try runHaul(arguments)
            #expect(again.status == 0 && again.stderr.contains("was already complete"), "stderr: \(again.stderr)")
            #expect(try SHA256.hex(ofFileAt: output.path) == content.sha256)
            #expect(scratch.contents == ["p.bin"])
            #expect(server.requests.count == before)
            // An unrelated file of that name is never taken for it: refused as before.
            try FileManager.default.removeItem(at: output)
            let second = try RunningHaul(arguments)
            try await Task.sleep(for: .milliseconds(500))
            kill(second.process.processIdentifier, SIGINT)
            #expect(await second.finish().status == 130)
            try Data(content.bytes(0..<(4 << 20))).write(to: output)
            let refused = try runHaul(arguments)
            #expect(refused.status == 4 && refused.stderr.contains("exists"), "stderr: \(refused.stderr)")
        }

        @Test("Another program's file taken over by -c has its journal from the first moment: a run killed right then still continues it")
        func takenOverThenKilled() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 600_000, seed: 141)
            server.serve(ServedFile(content: content, etag: "\"k\""), at: "/k.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("k.bin")
            try Data(content.bytes(0..<250_000)).write(to: output)
            // What -c does first, then nothing more (the process is gone).
            _ = try DownloadSession.adoptPartialFile(at: output, url: server.url("/k.bin"), length: 600_000, prefix: 250_000,
                                                     etag: "\"k\"", lastModified: nil, expectedSHA256: nil)
            #expect(!FileManager.default.fileExists(atPath: output.path))
            #expect(DownloadSession.journal(for: output) != nil)
            let result = try runHaul(["get", server.url("/k.bin").absoluteString, "-o", output.path, "-c", "-x", "2"])
            #expect(result.status == 0 && result.stderr.contains("resuming: "), "stderr: \(result.stderr)")
            #expect(try SHA256.hex(ofFileAt: output.path) == content.sha256)
            #expect(!server.requests.contains { $0.range == "bytes=0-" }, "\(server.requests)")
            #expect(scratch.contents == ["k.bin"])
        }

        @Test("A whole file of at most 128 KiB is complete when every byte matches the server's; one byte off, it is refused")
        func smallWholeFile() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 100_000, seed: 134)
            server.serve(ServedFile(content: content, etag: "\"s\""), at: "/s.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("s.bin").path
            let url = server.url("/s.bin").absoluteString
            let bytes = Data(content.bytes(0..<100_000))
            try bytes.write(to: URL(fileURLWithPath: output))
            let whole = try runHaul(["get", url, "-o", output, "-c"])
            #expect(whole.status == 0 && whole.stderr.contains("all its bytes match the server's"), "stderr: \(whole.stderr)")
            var off = bytes
            off[70_000] ^= 0x01
            try off.write(to: URL(fileURLWithPath: output))
            let refused = try runHaul(["get", url, "-o", output, "-c"])
            #expect(refused.status == 4 && refused.stderr.contains("differ from the server's"), "stderr: \(refused.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == off)
        }

        @Test("-c with haul's own journal, after the file changed on the server: fails, keeps the partial file; without -c the new version arrives")
        func changedFileNeverRestarts() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let old = GeneratedContent(size: 8 << 20, seed: 132)
            let new = GeneratedContent(size: 8 << 20, seed: 133)
            server.serve(ServedFile(content: old, etag: "\"old\"", bytesPerSecond: 2 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let output = scratch.file("f.bin")
            let arguments = ["get", server.url("/f").absoluteString, "-o", output.path, "-x", "4"]
            let run = try RunningHaul(arguments)
            try await Task.sleep(for: .milliseconds(500))
            kill(run.process.processIdentifier, SIGINT)
            #expect(await run.finish().status == 130)
            let journal = try ResumeData(#require(DownloadSession.journal(for: output)))
            let partName = try #require(scratch.contents.first { $0 != ".f.bin.haul-journal" && $0 != "f.bin" })
            let partial = try Data(contentsOf: scratch.file(partName))

            server.serve(ServedFile(content: new, etag: "\"new\""), at: "/f")
            let before = server.requests.count
            let refused = try runHaul(arguments + ["-c"])
            #expect(refused.status == 1, "stderr: \(refused.stderr)")
            #expect(refused.stderr.contains("the file changed on the server") && refused.stderr.contains("-c never starts over")
                    && refused.stderr.contains("run without -c to download the new version"), "stderr: \(refused.stderr)")
            #expect(refused.stderr.contains("the partial file and its journal are kept"), "stderr: \(refused.stderr)")
            // Nothing of the new version was fetched, nothing on disk changed.
            #expect(!server.requests[before...].contains { $0.range == "bytes=0-" }, "\(server.requests[before...])")
            let kept = try ResumeData(#require(DownloadSession.journal(for: output)))
            #expect(kept.etag == "\"old\"" && kept.doneRanges == journal.doneRanges)
            #expect(try Data(contentsOf: scratch.file(partName)) == partial)
            #expect(!FileManager.default.fileExists(atPath: output.path))

            let fresh = try runHaul(arguments + ["-q"])
            #expect(fresh.status == 0, "stderr: \(fresh.stderr)")
            #expect(try SHA256.hex(ofFileAt: output.path) == new.sha256)
            #expect(scratch.contents == ["f.bin"])
        }

        @Test("A full disk on a download that cannot resume says so, and where the bytes written are",
              .enabled(if: getuid() == 0, "needs root to mount a small file system"))
        func fullDiskWithoutResume() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            // No length and no ranges: nothing to resume from.
            server.serve(ServedFile(content: GeneratedContent(size: 3 << 20, seed: 140), supportsRanges: false, sendsLength: false),
                         at: "/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let small = scratch.file("small")
            try FileManager.default.createDirectory(at: small, withIntermediateDirectories: false)
            let mount = try Process.run(URL(fileURLWithPath: "/bin/mount"), arguments: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small.path])
            mount.waitUntilExit()
            try #require(mount.terminationStatus == 0, "could not mount a small file system")
            defer { try? Process.run(URL(fileURLWithPath: "/bin/umount"), arguments: [small.path]).waitUntilExit() }
            let output = small.appendingPathComponent("f.bin").path
            let result = try runHaul(["get", server.url("/f.bin").absoluteString, "-o", output])
            #expect(result.status == 4, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("no space left on the device writing \(output); no journal could be kept for it, so it "
                                           + "cannot resume: free some space and run the command again to start over"),
                    "stderr: \(result.stderr)")
            #expect(!result.stderr.contains("free some space and resume"), "stderr: \(result.stderr)")
            let partial = DownloadSession.partialFileURL(for: URL(fileURLWithPath: output)).path
            #expect(result.stderr.contains("what was written is in \(partial): delete it to free its space"), "stderr: \(result.stderr)")
        }
    }
}
