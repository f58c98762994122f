import Foundation
@testable import Haul
import HaulDaemon
import HaulTestServer
import Testing

extension Integration {
    @Suite("Daemon: what ended downloads leave, and saved entries it would never make")
    struct DaemonLeftoverTests {
        @Test("forceRemove then removeDownloadResult at once leaves nothing, and a new download under the name gets its own bytes")
        func removedThenCleaned() async throws {
            let (server, _, small) = try await bigAndSmall(seed: 1301)
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let first = try #require(try await rpc.call("aria2.addUri", [[server.url("/big.bin").absoluteString],
                                                                         ["out": "x.bin", "split": "1"]]) as? String)
            try await waitForJournal(scratch.file("root/.x.bin.haul-journal"))
            _ = try await rpc.call("aria2.forceRemove", [first])
            _ = try await rpc.call("aria2.removeDownloadResult", [first])
            // The removed download's cancellation ends after its result is gone: it still cleans up.
            try await waitUntil { (try? FileManager.default.contentsOfDirectory(atPath: scratch.file("root").path))?.isEmpty == true }
            let second = try #require(try await rpc.call("aria2.addUri", [[server.url("/small.bin").absoluteString],
                                                                          ["out": "x.bin"]]) as? String)
            let status = try await rpc.waitStopped(second)
            #expect(status["status"] as? String == "complete")
            #expect(status["totalLength"] as? String == "\(small.size)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("root/x.bin").path) == small.sha256)
        }

        @Test("A journal left under a name is resumed only for the URL it was made for; another URL gets its own bytes")
        func journalOnlyForItsURL() async throws {
            let (server, big, small) = try await bigAndSmall(seed: 1303)
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            let first = try #require(try await rpc.call("aria2.addUri", [[server.url("/big.bin").absoluteString],
                                                                         ["out": "y.bin", "split": "1"]]) as? String)
            try await waitForJournal(scratch.file("root/.y.bin.haul-journal"))
            _ = try await rpc.call("aria2.pause", [first])
            try await waitUntil { (try? await rpc.status(first)["status"] as? String) == "paused" }
            // Paused, it shows how far it got (aria2's clients draw their progress from it).
            try await waitUntil { (try? await rpc.status(first)["totalLength"] as? String) == "\(big.size)" }
            let paused = try await rpc.status(first)
            #expect(Int64(paused["completedLength"] as? String ?? "") ?? 0 > 0, "\(paused)")
            #expect(FileManager.default.fileExists(atPath: scratch.file("root/.y.bin.haul-journal").path))
            await daemon.stop()
            // The saved entry now names another URL under the same name (an older queue, or a
            // name whose download ended and was taken again): the journal there is not its own.
            let stateFile = scratch.file("state/queue.json")
            var state = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: stateFile)) as? [String: Any])
            var queue = try #require(state["queue"] as? [[String: Any]])
            queue[0]["uris"] = [server.url("/small.bin").absoluteString]
            state["queue"] = queue
            try JSONSerialization.data(withJSONObject: state).write(to: stateFile)
            let (again, rpcAgain) = try await startDaemon(scratch)
            defer { Task { await again.stop() } }
            _ = try await rpcAgain.call("aria2.unpause", [first])
            let status = try await rpcAgain.waitStopped(first)
            #expect(status["status"] as? String == "complete")
            #expect(status["totalLength"] as? String == "\(small.size)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("root/y.bin").path) == small.sha256)
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("root").path) == ["y.bin"])
        }

        @Test("A metalink file named like another file's partial file or journal is refused")
        func sideNamesRefused() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            for name in [".v.bin.haul-part", "sub/.v.bin.haul-journal"] {
                let xml = """
                <?xml version="1.0" encoding="UTF-8"?>
                <metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="\(name)"><size>3</size>
                <hash type="sha-256">\(String(repeating: "a", count: 64))</hash>
                <url>http://127.0.0.1:9/x</url></file></metalink>
                """
                await #expect(throws: RPCFailure.self, "\(name)") {
                    _ = try await rpc.call("aria2.addMetalink", [Data(xml.utf8).base64EncodedString(), ["pause": "true"]])
                }
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("root").path).isEmpty)
        }

        @Test("Saved entries the daemon would never make are not started: no write outside the root, no crash", arguments: [
            (#"{"gid":"00000000000000a1","uris":["URL"],"name":"../escape.bin","status":"waiting"}"#, "not a plain file name"),
            (#"{"gid":"00000000000000a2","uris":["URL"],"name":"sub/inner.bin","status":"waiting"}"#, "not a plain file name"),
            (#"{"gid":"00000000000000a3","uris":["URL"],"name":"/tmp/abs.bin","status":"waiting"}"#, "not a plain file name"),
            (#"{"gid":"00000000000000a4","uris":["URL"],"name":"d/../../up.bin","status":"waiting","hasMetalink":true}"#,
             "does not stay inside"),
            (#"{"gid":"00000000000000a5","uris":[],"name":"empty.bin","status":"waiting"}"#, "no http or https URI"),
            (#"{"gid":"00000000000000a6","uris":["http://[::1"],"name":"bad.bin","status":"active"}"#, "no http or https URI"),
            (#"{"gid":"00000000000000a7","uris":["URL"],"name":".v.bin.haul-part","status":"waiting"}"#, "partial file's"),
        ])
        func damagedEntries(entry: String, reason: String) async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 10_000, seed: 1305)), at: "/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try FileManager.default.createDirectory(at: scratch.file("state"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: scratch.file("work/root"), withIntermediateDirectories: true)
            let json = #"{"version":1,"queue":["# + entry.replacingOccurrences(of: "URL", with: server.url("/f.bin").absoluteString)
                + #"],"stopped":[]}"#
            try Data(json.utf8).write(to: scratch.file("state/queue.json"))
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let gid = try #require(entry.split(separator: "\"").dropFirst(3).first.map(String.init))
            let status = try await rpc.waitStopped(gid, seconds: 5)
            #expect(status["status"] as? String == "error")
            #expect((status["errorMessage"] as? String ?? "").contains(reason), "\(status)")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.url.path).sorted() == ["root", "state", "work"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("root").path).isEmpty)
            #expect(server.requests.isEmpty)
        }
    }
}

extension Integration.DaemonLeftoverTests {
    @Test("haul daemon takes a relative --state-dir and --dir from the current directory")
    func relativeStateDirectory() async throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        try FileManager.default.createDirectory(at: scratch.file("root"), withIntermediateDirectories: true)
        let port = try unusedPort()
        let process = Process()
        process.executableURL = try haulExecutable()
        process.currentDirectoryURL = scratch.url
        process.arguments = ["daemon", "--dir", "root", "--state-dir", "state", "--listen", "127.0.0.1:\(port)",
                             "--secret", "relative-secret-1"]
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            process.waitUntilExit()
        }
        let rpc = RPCClient(port: port, secret: "relative-secret-1")
        try await waitUntil { (try? await rpc.call("aria2.getVersion")) != nil || !process.isRunning }
        if !process.isRunning {
            Issue.record("haul daemon exited: \(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        }
        // The secret and address are kept in the state directory the command named.
        #expect(FileManager.default.fileExists(atPath: scratch.file("state").path))
    }
}

/// A server with `/big.bin` (4 MiB at 1 MiB/s, so it is still running when the test acts) and
/// `/small.bin` (200 kB), each with its own ETag.
private func bigAndSmall(seed: UInt64) async throws -> (TestServer, GeneratedContent, GeneratedContent) {
    let server = try await TestServer.start()
    let big = GeneratedContent(size: 4 << 20, seed: seed)
    let small = GeneratedContent(size: 200_000, seed: seed + 1)
    server.serve(ServedFile(content: big, etag: "\"big\"", bytesPerSecond: 1 << 20), at: "/big.bin")
    server.serve(ServedFile(content: small, etag: "\"small\""), at: "/small.bin")
    return (server, big, small)
}

/// Waits until the journal at `url` exists (the download has bytes on disk), at most 10 s.
private func waitForJournal(_ url: URL) async throws {
    try await waitUntil { FileManager.default.fileExists(atPath: url.path) }
}

private func waitUntil(seconds: Double = 10, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw RPCFailure(code: 0, message: "timed out waiting")
}

extension Integration.DaemonLeftoverTests {
    @Test("A queue.json of another format stops the daemon with a reason and is left as it was")
    func otherFormat() async throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        try FileManager.default.createDirectory(at: scratch.file("state"), withIntermediateDirectories: true)
        let json = Data(#"{"version":99,"queue":[],"stopped":[],"future":"fields"}"#.utf8)
        try json.write(to: scratch.file("state/queue.json"))
        do {
            let (daemon, _) = try await startDaemon(scratch)
            await daemon.stop()
            Issue.record("the daemon started over a queue.json of format 99")
        } catch {
            #expect("\(error)".contains("is of format 99") && "\(error)".contains("move the file away"), "\(error)")
        }
        #expect(try Data(contentsOf: scratch.file("state/queue.json")) == json)
    }
}
