import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
@testable import HaulDaemon
import HaulTestServer
import Testing

/// A JSON-RPC client for tests: one POST, the decoded answer and the HTTP status.
struct RPCClient {
    let port: Int
    let secret: String

    func post(_ body: Data, headers: [String: String] = [:]) async throws -> (status: Int, json: Any?) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/jsonrpc")!)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        // A session per call: no connection kept from a daemon that was stopped meanwhile.
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        let (data, response) = try await session.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, try? JSONSerialization.jsonObject(with: data))
    }

    /// Calls `method` with the token first (`token: ""` sends none); returns `result`, or throws
    /// the error object.
    func call(_ method: String, _ params: [Any] = [], token: String? = nil) async throws -> Any {
        let first: [Any] = token == "" ? [] : [token ?? "token:\(secret)"]
        let body = try JSONSerialization.data(withJSONObject: [
            "jsonrpc": "2.0", "id": "t", "method": method, "params": first + params,
        ])
        let (_, json) = try await post(body)
        let object = try #require(json as? [String: Any])
        if let error = object["error"] as? [String: Any] { throw RPCFailure(code: error["code"] as? Int ?? 0,
                                                                            message: error["message"] as? String ?? "") }
        return object["result"] as Any
    }

    func status(_ gid: String) async throws -> [String: Any] {
        try #require(try await call("aria2.tellStatus", [gid]) as? [String: Any])
    }

    /// Polls until `gid` is stopped (complete, error or removed), at most `seconds`.
    func waitStopped(_ gid: String, seconds: Double = 20) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            let status = try await status(gid)
            if ["complete", "error", "removed"].contains(status["status"] as? String ?? "") { return status }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RPCFailure(code: 0, message: "\(gid) did not stop within \(seconds) s")
    }
}

struct RPCFailure: Error, Equatable {
    var code: Int
    var message: String
}

/// A daemon on a free port with its own download and state directories.
func startDaemon(_ scratch: Scratch, secret: String = "test-secret-1234",
                         origins: Set<String> = [], socket: String? = nil) async throws -> (HaulDaemon.Daemon, RPCClient) {
    try? FileManager.default.createDirectory(at: scratch.file("root"), withIntermediateDirectories: true)
    var settings = HaulDaemon.Daemon.Settings(root: scratch.file("root"))
    settings.stateDirectory = scratch.file("state").path
    settings.port = 0
    settings.secret = secret
    settings.allowedOrigins = origins
    settings.socketPath = socket
    settings.downloads.connectionsPerDownload = 4
    settings.downloads.syncsBeforeMove = false
    let daemon = try await HaulDaemon.Daemon.start(settings)
    return (daemon, RPCClient(port: daemon.port, secret: secret))
}

extension Integration {
    @Suite("Daemon: aria2 JSON-RPC, durable queue, confinement")
    struct DaemonTests {
        @Test("addUri downloads the exact bytes into the root; tellStatus and tellStopped in aria2's shapes")
        func addAndComplete() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 500)
            server.serve(ServedFile(content: content, etag: "\"d\""), at: "/file.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let gid = try #require(try await rpc.call("aria2.addUri", [[server.url("/file.bin").absoluteString]]) as? String)
            #expect(gid.count == 16 && gid.allSatisfy(\.isHexDigit))
            let status = try await rpc.waitStopped(gid)
            #expect(status["status"] as? String == "complete")
            #expect(status["totalLength"] as? String == "\(content.size)")
            #expect(status["completedLength"] as? String == "\(content.size)")
            #expect(status["sha256"] as? String == content.sha256)
            #expect(try SHA256.hex(ofFileAt: scratch.file("root/file.bin").path) == content.sha256)
            let stopped = try #require(try await rpc.call("aria2.tellStopped", [0, 10, ["gid", "status"]]) as? [[String: Any]])
            #expect(stopped.count == 1 && stopped[0]["gid"] as? String == gid && stopped[0].count == 2)
            let stat = try #require(try await rpc.call("aria2.getGlobalStat") as? [String: String])
            #expect(stat["numStopped"] == "1" && stat["numActive"] == "0")
        }

        @Test("Without the right token nothing happens; wrong tokens are answered slowly")
        func tokens() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            for token in ["token:wrong", "nothing", "token:"] {
                let started = ContinuousClock.now
                await #expect(throws: RPCFailure(code: 1, message: "Unauthorized")) {
                    _ = try await rpc.call("aria2.addUri", [["http://127.0.0.1:1/x"]], token: token)
                }
                #expect(ContinuousClock.now - started >= .milliseconds(400))
            }
            let waiting = try #require(try await rpc.call("aria2.tellWaiting", [0, 10]) as? [Any])
            #expect(waiting.isEmpty)
        }

        @Test("Requests are refused: a foreign Origin, an oversized body, malformed JSON, unknown methods")
        func refusals() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch, origins: ["http://ariang.local"])
            defer { Task { await daemon.stop() } }
            let call = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": 1, "method": "aria2.getVersion",
                                                                   "params": ["token:\(rpc.secret)"]])
            #expect(try await rpc.post(call, headers: ["Origin": "http://evil.example"]).status == 403)
            #expect(try await rpc.post(call, headers: ["Origin": "http://ariang.local"]).status == 200)
            #expect(try await rpc.post(Data(count: 2 << 20)).status == 413)
            let garbage = try await rpc.post(Data("{not json".utf8))
            #expect(((garbage.json as? [String: Any])?["error"] as? [String: Any])?["code"] as? Int == -32700)
            await #expect(throws: RPCFailure(code: -32601, message: "No such method: aria2.nope")) {
                _ = try await rpc.call("aria2.nope")
            }
            await #expect(throws: RPCFailure(code: 1, message: "aria2.addTorrent is not supported by haul")) {
                _ = try await rpc.call("aria2.addTorrent", ["AAAA"])
            }
            let methods = try #require(try await rpc.call("system.listMethods", token: nil) as? [String])
            #expect(methods.contains("aria2.addUri"))
        }

        @Test("out and dir can never leave the download root", arguments: [
            ["out": "../escape"], ["out": "/tmp/escape"], ["out": "a/b"], ["out": ".hidden"], ["out": ".."],
            ["dir": "/tmp"], ["dir": "../"],
        ])
        func confinement(options: [String: String]) async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            do {
                _ = try await rpc.call("aria2.addUri", [["http://127.0.0.1:1/x"], options])
                Issue.record("\(options) was accepted")
            } catch let failure as RPCFailure {
                #expect(failure.code == 1)
                #expect(failure.message.contains("download directory"))
            }
            let waiting = try await rpc.call("aria2.tellWaiting", [0, 10]) as? [Any]
            #expect(waiting?.isEmpty == true)
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("root").path).isEmpty)
        }

        @Test("The queue survives a restart: a paused download stays paused with its GID, then finishes exactly")
        func durableQueue() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 8 << 20, seed: 501)
            server.serve(ServedFile(content: content, etag: "\"q\"", bytesPerSecond: 2 << 20), at: "/slow.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (first, rpc) = try await startDaemon(scratch)
            let gid = try #require(try await rpc.call("aria2.addUri", [[server.url("/slow.bin").absoluteString], ["out": "kept.bin"]]) as? String)
            let second = try #require(try await rpc.call("aria2.addUri", [[server.url("/slow.bin").absoluteString], ["out": "later.bin"]]) as? String)
            try await Task.sleep(for: .milliseconds(600))
            _ = try await rpc.call("aria2.pause", [gid])
            _ = try await rpc.call("aria2.pause", [second])
            #expect(try await rpc.status(gid)["status"] as? String == "paused")
            await first.stop()
            let (daemon, again) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let waiting = try #require(try await again.call("aria2.tellWaiting", [0, 10, ["gid", "status"]]) as? [[String: String]])
            #expect(waiting.map { $0["gid"] } == [gid, second])
            #expect(waiting.allSatisfy { $0["status"] == "paused" })
            _ = try await again.call("aria2.unpause", [gid])
            let status = try await again.waitStopped(gid, seconds: 30)
            #expect(status["status"] as? String == "complete")
            #expect(try SHA256.hex(ofFileAt: scratch.file("root/kept.bin").path) == content.sha256)
            // Removing the paused one leaves nothing of it behind.
            _ = try await again.call("aria2.remove", [second])
            #expect(!FileManager.default.fileExists(atPath: scratch.file("root/.later.bin.haul-part").path))
        }

        @Test("Two downloads asking for one name get distinct names; an existing file is never overwritten")
        func names() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 200_000, seed: 502)
            server.serve(ServedFile(content: content), at: "/same.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            try Data("mine".utf8).write(to: scratch.file("root/same.bin"))
            let first = try #require(try await rpc.call("aria2.addUri", [[server.url("/same.bin").absoluteString]]) as? String)
            let second = try #require(try await rpc.call("aria2.addUri", [[server.url("/same.bin").absoluteString]]) as? String)
            _ = try await rpc.waitStopped(first)
            _ = try await rpc.waitStopped(second)
            #expect(try String(contentsOf: scratch.file("root/same.bin"), encoding: .utf8) == "mine")
            #expect(try SHA256.hex(ofFileAt: scratch.file("root/same.1.bin").path) == content.sha256)
            #expect(try SHA256.hex(ofFileAt: scratch.file("root/same.2.bin").path) == content.sha256)
        }
    }
}

extension Integration.DaemonTests {
    @Test("aria2p, aria2's own Python client, drives the daemon unchanged")
    func aria2pClient() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 2 << 20, seed: 503)
        server.serve(ServedFile(content: content, etag: "\"p\""), at: "/file.bin")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let (daemon, rpc) = try await startDaemon(scratch)
        defer { Task { await daemon.stop() } }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../clients/aria2p_check.py").standardizedFileURL
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, "\(rpc.port)", rpc.secret, server.url("/file.bin").absoluteString,
                             content.sha256, scratch.file("root").path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // make test installs aria2p (scripts/ensure-python-packages.sh); without it this fails, never skips.
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("aria2p: ok"), "\(text)")
    }
}

/// A TCP port nothing listens on now (bound and released; good enough on loopback in tests).
private func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    try withUnsafeMutablePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            guard bind(fd, raw, length) == 0, getsockname(fd, raw, &length) == 0 else { throw RPCFailure(code: 0, message: "no port") }
        }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

extension Integration.DaemonTests {
    @Test("kill -9 of the daemon with four active downloads: the restarted daemon finishes them, GIDs and bytes exact")
    func killNine() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let contents = (0..<4).map { GeneratedContent(size: 8 << 20, seed: 510 + UInt64($0)) }
        for (index, content) in contents.enumerated() {
            server.serve(ServedFile(content: content, etag: "\"k\(index)\"", bytesPerSecond: 1 << 20), at: "/k\(index).bin")
        }
        let scratch = Scratch()
        defer { scratch.cleanup() }
        try FileManager.default.createDirectory(at: scratch.file("root"), withIntermediateDirectories: true)
        let port = try freePort()
        let arguments = ["daemon", "--dir", scratch.file("root").path, "--state-dir", scratch.file("state").path,
                         "--listen", "127.0.0.1:\(port)", "--secret", "kill-nine-secret", "-x", "4"]
        let rpc = RPCClient(port: port, secret: "kill-nine-secret")
        let first = try RunningHaul(arguments)
        try await Task.sleep(for: .milliseconds(800))
        var gids: [String] = []
        for index in 0..<4 {
            gids.append(try #require(try await rpc.call("aria2.addUri", [[server.url("/k\(index).bin").absoluteString]]) as? String))
        }
        try await Task.sleep(for: .milliseconds(1500))
        kill(first.process.processIdentifier, SIGKILL)
        _ = await first.finish()
        let second = try RunningHaul(arguments)
        defer { second.process.terminate() }
        try await Task.sleep(for: .milliseconds(800))
        for (index, gid) in gids.enumerated() {
            let status = try await rpc.waitStopped(gid, seconds: 40)
            #expect(status["status"] as? String == "complete", "\(gid): \(status)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("root/k\(index).bin").path) == contents[index].sha256)
        }
        // Resumed from the journals: re-fetched bytes stay within segments × 1 MiB per download
        // (journal granularity), plus seam overlaps.
        let total = contents.reduce(Int64(0)) { $0 + $1.size }
        #expect(server.bytesSent <= total + 4 * (4 << 20) + (4 << 20), "sent \(server.bytesSent) for \(total)")
    }
}

extension Integration.DaemonTests {
    @Test("Origins: allowed ones, and the daemon's own loopback address; never another site or a DNS-rebound name",
          arguments: [
              ("http://127.0.0.1:6800", "127.0.0.1:6800", true), ("http://localhost:6800", "localhost:6800", true),
              ("http://[::1]:6800", "[::1]:6800", true), ("http://ariang.local", "127.0.0.1:6800", true),
              ("http://evil.example", "127.0.0.1:6800", false), ("http://evil.example:6800", "evil.example:6800", false),
              ("http://127.0.0.1:6800", "127.0.0.1:9999", false), ("null", "127.0.0.1:6800", false),
          ] as [(String, String, Bool)])
    func originRule(origin: String, host: String, allowed: Bool) {
        var policy = RPCServer.Policy()
        policy.allowedOrigins = ["http://ariang.local"]
        #expect(policy.allows(origin: origin, host: host) == allowed)
        #expect(policy.allows(origin: nil, host: host))
    }
}

extension Integration.DaemonTests {
    @Test("haul add, ls, pause, resume, wait and rm drive a daemon found through its state directory")
    func commandLineClients() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 4 << 20, seed: 520)
        server.serve(ServedFile(content: content, etag: "\"c\"", bytesPerSecond: 2 << 20), at: "/c.bin")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let (daemon, _) = try await startDaemon(scratch)
        defer { Task { await daemon.stop() } }
        let state = ["--state-dir", scratch.file("state").path]
        let added = try runHaul(["add", server.url("/c.bin").absoluteString, "-o", "c.bin", "--sha256", content.sha256] + state)
        #expect(added.status == 0, "\(added.stderr)")
        let gid = added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(gid.count == 16)
        #expect(try runHaul(["pause", gid] + state).status == 0)
        let listed = try runHaul(["ls"] + state)
        #expect(listed.stdout.contains(gid) && listed.stdout.contains("paused"), "\(listed.stdout)")
        #expect(try runHaul(["resume", gid] + state).status == 0)
        let waited = try runHaul(["wait", gid] + state)
        #expect(waited.status == 0, "\(waited.stderr)")
        #expect(try SHA256.hex(ofFileAt: scratch.file("root/c.bin").path) == content.sha256)
        // A failed download's wait exits as haul get would (HTTP error: 2).
        let missing = try runHaul(["add", server.url("/missing.bin").absoluteString] + state)
        let failed = try runHaul(["wait", missing.stdout.trimmingCharacters(in: .whitespacesAndNewlines)] + state)
        #expect(failed.status == 2, "\(failed.stderr)")
        // Without a daemon, the client says how to start one.
        let none = try runHaul(["ls", "--state-dir", scratch.file("nowhere").path])
        #expect(none.status == 64 && none.stderr.contains("haul daemon --dir"))
    }
}

extension Integration.DaemonTests {
    @Test("The daemon also answers on a private Unix socket (0600), token required there too")
    func unixSocket() async throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let socket = scratch.file("run/rpc.sock").path
        let (daemon, rpc) = try await startDaemon(scratch, socket: socket)
        defer { Task { await daemon.stop() } }
        let attributes = try FileManager.default.attributesOfItem(atPath: socket)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        func curl(_ token: String) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["curl", "-s", "--unix-socket", socket, "-H", "Content-Type: application/json", "-d",
                                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.getVersion\",\"params\":[\"\(token)\"]}",
                                 "http://localhost/jsonrpc"]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        #expect(try curl("token:\(rpc.secret)").contains("\"version\""))
        #expect(try curl("token:wrong").contains("Unauthorized"))
    }
}

extension Integration.DaemonTests {
    @Test("Batches and system.multicall carry status lists whole (keys filtered as asked)")
    func batchesAndMulticall() async throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let (daemon, rpc) = try await startDaemon(scratch)
        defer { Task { await daemon.stop() } }
        let gid = try #require(try await rpc.call("aria2.addUri", [["http://127.0.0.1:9/never"], ["out": "n.bin", "pause": "true"]]) as? String)
        let token = "token:\(rpc.secret)"
        let batch = try JSONSerialization.data(withJSONObject: [
            ["jsonrpc": "2.0", "id": 7, "method": "aria2.tellWaiting", "params": [token, 0, 10, ["gid", "status"]]],
            ["jsonrpc": "2.0", "id": "x", "method": "aria2.getGlobalStat", "params": [token]],
        ])
        let answer = try #require(try await rpc.post(batch).json as? [[String: Any]])
        #expect(answer.count == 2 && answer[0]["id"] as? Int == 7 && answer[1]["id"] as? String == "x")
        #expect((answer[0]["result"] as? [[String: String]]) == [["gid": gid, "status": "paused"]])
        let multicall = try #require(try await rpc.call("system.multicall", [[
            ["methodName": "aria2.tellWaiting", "params": [token, 0, 10, ["gid"]]],
            ["methodName": "aria2.getVersion", "params": ["token:wrong"]],
        ]], token: "") as? [Any])
        #expect((multicall[0] as? [[[String: String]]]) == [[["gid": gid]]])
        #expect((multicall[1] as? [String: Any])?["message"] as? String == "Unauthorized")
    }
}

extension Integration.DaemonTests {
    @Test("haul daemon --detach returns at once, keeps serving in the background, and stops on aria2.shutdown")
    func detach() async throws {
        let scratch = Scratch()
        defer { scratch.cleanup() }
        try FileManager.default.createDirectory(at: scratch.file("root"), withIntermediateDirectories: true)
        let port = try freePort()
        let started = try runHaul(["daemon", "--detach", "--dir", scratch.file("root").path, "--state-dir",
                                   scratch.file("state").path, "--listen", "127.0.0.1:\(port)", "--secret", "detached-secret"])
        #expect(started.status == 0, "\(started.stderr)")
        #expect(started.stdout.contains("daemon.log"))
        let rpc = RPCClient(port: port, secret: "detached-secret")
        var version: [String: Any]?
        for _ in 0..<50 where version == nil {
            version = try? await rpc.call("aria2.getVersion") as? [String: Any]
            if version == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(version?["version"] != nil)
        _ = try await rpc.call("aria2.shutdown")
        try await Task.sleep(for: .milliseconds(500))
        await #expect(throws: (any Error).self) { _ = try await rpc.call("aria2.getVersion") }
        let log = try String(contentsOf: scratch.file("state/daemon.log"), encoding: .utf8)
        #expect(log.contains("haul daemon"))
    }
}

extension Integration.DaemonTests {
    @Test("changePosition reorders the queue; changeOption sets split and max-download-limit; getServers while active")
    func reorderAndOptions() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 3 << 20, seed: 530)
        server.serve(ServedFile(content: content, etag: "\"o\""), at: "/o.bin")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let (daemon, rpc) = try await startDaemon(scratch)
        defer { Task { await daemon.stop() } }
        let url = server.url("/o.bin").absoluteString
        let first = try #require(try await rpc.call("aria2.addUri", [[url], ["out": "a.bin", "pause": "true"]]) as? String)
        let second = try #require(try await rpc.call("aria2.addUri", [[url], ["out": "b.bin", "pause": "true"]]) as? String)
        #expect(try await rpc.call("aria2.changePosition", [second, 0, "POS_SET"]) as? Int == 0)
        let order = try #require(try await rpc.call("aria2.tellWaiting", [0, 10, ["gid"]]) as? [[String: String]])
        #expect(order.map { $0["gid"] } == [second, first])
        _ = try await rpc.call("aria2.changeOption", [first, ["split": "2", "max-download-limit": "1M"]])
        let options = try #require(try await rpc.call("aria2.getOption", [first]) as? [String: String])
        #expect(options["split"] == "2" && options["max-download-limit"] == "\(1 << 20)")
        await #expect(throws: RPCFailure(code: 1, message: "max-overall-download-limit is a global option: set it with changeGlobalOption")) {
            _ = try await rpc.call("aria2.changeOption", [first, ["max-overall-download-limit": "1M"]])
        }
        let started = ContinuousClock.now
        _ = try await rpc.call("aria2.unpause", [first])
        try await Task.sleep(for: .milliseconds(700))
        let servers = try #require(try await rpc.call("aria2.getServers", [first]) as? [[String: Any]])
        #expect((servers.first?["servers"] as? [[String: String]])?.first?["uri"] == url)
        let connections = Int(try await rpc.status(first)["connections"] as? String ?? "") ?? 0
        #expect(connections <= 2)
        let status = try await rpc.waitStopped(first, seconds: 20)
        #expect(status["status"] as? String == "complete")
        // 3 MiB at 1 MiB/s: at least about two seconds.
        #expect(ContinuousClock.now - started >= .milliseconds(1800))
        #expect(try SHA256.hex(ofFileAt: scratch.file("root/a.bin").path) == content.sha256)
    }
}

extension Integration.DaemonTests {
    @Test("allow-overwrite replaces a regular file at out (never a directory); min-split-size shapes the segments")
    func overwriteAndSplit() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 4 << 20, seed: 540)
        server.serve(ServedFile(content: content, etag: "\"w\""), at: "/w.bin")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let (daemon, rpc) = try await startDaemon(scratch)
        defer { Task { await daemon.stop() } }
        try Data("old".utf8).write(to: scratch.file("root/w.bin"))
        let url = server.url("/w.bin").absoluteString
        let gid = try #require(try await rpc.call("aria2.addUri", [[url], ["out": "w.bin", "allow-overwrite": "true",
                                                                           "min-split-size": "2M", "split": "8"]]) as? String)
        #expect(try await rpc.waitStopped(gid)["status"] as? String == "complete")
        #expect(try SHA256.hex(ofFileAt: scratch.file("root/w.bin").path) == content.sha256)
        // 4 MiB with 2 MiB segments: the probe and one more range request, whatever split says.
        #expect(server.requests.count <= 4, "\(server.requests.map(\.range))")
        // A directory at out is never replaced, allow-overwrite or not.
        try FileManager.default.createDirectory(at: scratch.file("root/d.bin"), withIntermediateDirectories: false)
        let blocked = try #require(try await rpc.call("aria2.addUri", [[url], ["out": "d.bin", "allow-overwrite": "true"]]) as? String)
        let status = try await rpc.waitStopped(blocked)
        #expect(status["status"] as? String == "error")
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: scratch.file("root/d.bin").path, isDirectory: &isDirectory) && isDirectory.boolValue)
    }
}

extension Integration.DaemonTests {
    @Test("max-overall-download-limit is shared by the running downloads (changeGlobalOption), and lifted again")
    func overallLimit() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.shutdown() } }
        let content = GeneratedContent(size: 2 << 20, seed: 550)
        server.serve(ServedFile(content: content, etag: "\"g\""), at: "/g.bin")
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let (daemon, rpc) = try await startDaemon(scratch)
        defer { Task { await daemon.stop() } }
        _ = try await rpc.call("aria2.changeGlobalOption", [["max-overall-download-limit": "2M"]])
        let global = try #require(try await rpc.call("aria2.getGlobalOption") as? [String: String])
        #expect(global["max-overall-download-limit"] == "\(2 << 20)")
        let url = server.url("/g.bin").absoluteString
        let started = ContinuousClock.now
        let first = try #require(try await rpc.call("aria2.addUri", [[url], ["out": "g1.bin"]]) as? String)
        let second = try #require(try await rpc.call("aria2.addUri", [[url], ["out": "g2.bin"]]) as? String)
        _ = try await rpc.waitStopped(first, seconds: 20)
        _ = try await rpc.waitStopped(second, seconds: 20)
        // 4 MiB in all at 2 MiB/s together: about two seconds (unlimited: a few milliseconds).
        #expect(ContinuousClock.now - started >= .milliseconds(1500), "took \(ContinuousClock.now - started)")
        #expect(try SHA256.hex(ofFileAt: scratch.file("root/g1.bin").path) == content.sha256)
        #expect(try SHA256.hex(ofFileAt: scratch.file("root/g2.bin").path) == content.sha256)
        _ = try await rpc.call("aria2.changeGlobalOption", [["max-overall-download-limit": "0"]])
        let fast = ContinuousClock.now
        let third = try #require(try await rpc.call("aria2.addUri", [[url], ["out": "g3.bin"]]) as? String)
        _ = try await rpc.waitStopped(third, seconds: 20)
        #expect(ContinuousClock.now - fast < .milliseconds(1500))
    }
}
