import Foundation
import Haul
import HaulTestServer
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Integration {
    /// What happens after the last byte (a server's name, `-N`'s time stamp) happens in the
    /// directory the download was written in, never in whatever a path names by then.
    @Suite("Safety: a directory swapped during the download")
    struct SafetySwapTests {
        @Test("The rename to a server's name and -N's time stamp never follow a directory swapped for a link")
        func swappedDirectory() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 139)
            var file = ServedFile(content: content, etag: "\"d\"", lastModified: "Tue, 01 Jan 2030 00:00:00 GMT",
                                  bytesPerSecond: 1 << 20)
            file.extraHeaders = [("Content-Disposition", "attachment; filename=\"renamed.bin\"")]
            server.serve(file, at: "/m.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let fm = FileManager.default
            let dl = scratch.file("dl"), moved = scratch.file("dl.moved"), other = scratch.file("other")
            try fm.createDirectory(at: dl, withIntermediateDirectories: false)
            try fm.createDirectory(at: other, withIntermediateDirectories: false)
            let decoy = Data("not haul's".utf8)
            try decoy.write(to: other.appendingPathComponent("m.bin"))
            let precious = Data("the user's".utf8)
            try precious.write(to: other.appendingPathComponent("renamed.bin"))

            let run = try RunningHaul(["get", server.url("/m.bin").absoluteString, "-d", dl.path, "-x", "2", "-N",
                                       "--force-server-names"])
            try await Task.sleep(for: .milliseconds(400))
            try fm.moveItem(at: dl, to: moved)
            try fm.createSymbolicLink(at: dl, withDestinationURL: other)
            let result = await run.finish()
            #expect(result.status == 0, "stderr: \(result.stderr)")
            // The download and its rename happened where it was written.
            #expect(try SHA256.hex(ofFileAt: moved.appendingPathComponent("renamed.bin").path) == content.sha256)
            #expect(!fm.fileExists(atPath: moved.appendingPathComponent("m.bin").path))
            // Nothing in the directory the link points at was touched.
            #expect(try Data(contentsOf: other.appendingPathComponent("m.bin")) == decoy)
            #expect(try Data(contentsOf: other.appendingPathComponent("renamed.bin")) == precious)
            var info = stat()
            #expect(stat(moved.appendingPathComponent("renamed.bin").path, &info) == 0 && info.st_mtim.tv_sec == 1_893_456_000)
            #expect(stat(other.appendingPathComponent("renamed.bin").path, &info) == 0 && info.st_mtim.tv_sec != 1_893_456_000)
        }
    }
}
