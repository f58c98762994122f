import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import Haul
@testable import HaulDaemon
import HaulTestServer
import Testing

// Hostile tests of `haul daemon`: each asserts what the daemon promises (README, "The daemon";
// docs/architecture.md), never what it happens to do now. Cases that could crash the daemon run
// it as a separate `haul daemon` process, so a crash fails the test instead of the test run.

/// A blocking TCP socket to 127.0.0.1 with timeouts, for requests no HTTP client would send.
private final class RawSocket {
    let fd: Int32

    init(port: Int, timeout: Double = 5) throws {
        fd = try Self.connected(port: port, timeout: timeout)
    }

    private static func connected(port: Int, timeout: Double) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RPCFailure(code: 0, message: "socket: \(errno)") }
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw RPCFailure(code: 0, message: "connect: \(code)")
        }
        return fd
    }

    /// Whether the peer ends the connection (EOF or reset) before the receive timeout.
    func closedByPeer() -> Bool {
        while true {
            var buffer = [UInt8](repeating: 0, count: 65536)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }

    deinit { Glibc.close(fd) }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Some bytes; `[]` at end of stream, `nil` on a timeout or error.
    func receive(max: Int = 65536) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: max)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
        if count < 0 { return nil }
        return Array(buffer.prefix(count))
    }

    private var pending: [UInt8] = []

    func readExactly(_ count: Int) -> [UInt8]? {
        while pending.count < count {
            guard let more = receive(), !more.isEmpty else { return nil }
            pending += more
        }
        defer { pending.removeFirst(count) }
        return Array(pending.prefix(count))
    }

    /// Bytes up to and including `marker`, or `nil`.
    func readThrough(_ marker: String) -> String? {
        let marker = Array(marker.utf8)
        while true {
            if let range = firstRange(of: marker, in: pending) {
                let head = Array(pending[..<range])
                pending.removeFirst(range)
                return String(decoding: head, as: UTF8.self)
            }
            guard let more = receive(), !more.isEmpty else { return nil }
            pending += more
        }
    }

    private func firstRange(of marker: [UInt8], in bytes: [UInt8]) -> Int? {
        guard bytes.count >= marker.count else { return nil }
        for start in 0...(bytes.count - marker.count) where Array(bytes[start..<start + marker.count]) == marker {
            return start + marker.count
        }
        return nil
    }

    /// One HTTP response: the status and the body (by Content-Length); `nil` when the
    /// connection closed or timed out first.
    func httpResponse() -> (status: Int, headers: String, body: String)? {
        guard let head = readThrough("\r\n\r\n") else { return nil }
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
        guard let body = readExactly(length) else { return nil }
        return (status, head, String(decoding: body, as: UTF8.self))
    }

    /// Opens a WebSocket at `/jsonrpc`; the status of the answer (101 when upgraded).
    func upgrade(port: Int, host: String? = nil, origin: String? = nil) -> Int {
        var request = "GET /jsonrpc HTTP/1.1\r\nHost: \(host ?? "127.0.0.1:\(port)")\r\nUpgrade: websocket\r\n"
            + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if let origin { request += "Origin: \(origin)\r\n" }
        send(request + "\r\n")
        guard let head = readThrough("\r\n\r\n") else { return 0 }
        return Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// Sends one WebSocket frame, masked as a client must (`masked: false` and `reserved` bits
    /// make frames a client must not send).
    func sendFrame(_ payload: [UInt8], opcode: UInt8 = 1, fin: Bool = true, masked: Bool = true, reserved: UInt8 = 0) {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | (reserved << 4) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            frame.append(maskBit | UInt8(payload.count))
        } else if payload.count < 65536 {
            frame += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xff)]
        } else {
            frame.append(maskBit | 127)
            frame += (0..<8).reversed().map { UInt8((UInt64(payload.count) >> (UInt64($0) * 8)) & 0xff) }
        }
        guard masked else {
            send(frame + payload)
            return
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        send(frame)
    }

    /// One frame from the server: opcode and payload; `nil` on close of the stream or timeout.
    func receiveFrame() -> (opcode: UInt8, payload: [UInt8])? {
        guard let head = readExactly(2) else { return nil }
        var length = Int(head[1] & 0x7f)
        if length == 126 {
            guard let extra = readExactly(2) else { return nil }
            length = Int(extra[0]) << 8 | Int(extra[1])
        } else if length == 127 {
            guard let extra = readExactly(8) else { return nil }
            length = extra.reduce(0) { $0 << 8 | Int($1) }
        }
        guard let payload = readExactly(length) else { return nil }
        return (head[0] & 0x0f, payload)
    }
}

/// A raw POST of `body` to /jsonrpc with extra header lines.
private func rawPost(port: Int, body: String, headerLines: [String] = [], host: String? = nil) throws -> (status: Int, headers: String, body: String)? {
    let socket = try RawSocket(port: port)
    var request = "POST /jsonrpc HTTP/1.1\r\nHost: \(host ?? "127.0.0.1:\(port)")\r\nContent-Type: application/json\r\n"
    for line in headerLines { request += line + "\r\n" }
    request += "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
    socket.send(request)
    return socket.httpResponse()
}

/// A TCP port nothing listens on now.
func unusedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { Glibc.close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    try withUnsafeMutablePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            guard bind(fd, raw, length) == 0, getsockname(fd, raw, &length) == 0 else { throw RPCFailure(code: 0, message: "no port") }
        }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// `haul daemon` as its own process (so a crash is a failed expectation, not a dead test run),
/// optionally with a descriptor limit; ready once it accepts connections.
private final class DaemonProcess {
    let process = Process()
    let port: Int
    let rpc: RPCClient

    init(_ scratch: Scratch, secret: String = "breaker-secret-1", fileLimit: Int? = nil) async throws {
        try FileManager.default.createDirectory(at: scratch.file("root"), withIntermediateDirectories: true)
        port = try unusedPort()
        rpc = RPCClient(port: port, secret: secret)
        let arguments = ["daemon", "--dir", scratch.file("root").path, "--state-dir", scratch.file("state").path,
                         "--listen", "127.0.0.1:\(port)", "--secret", secret]
        let haul = try haulExecutable().path
        if let fileLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(fileLimit) && exec \"$0\" \"$@\"", haul] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: haul)
            process.arguments = arguments
        }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<100 {
            if (try? RawSocket(port: port, timeout: 1)) != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw RPCFailure(code: 0, message: "the daemon did not start")
    }

    var isRunning: Bool { process.isRunning }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

private func request(_ method: String, _ params: [Any], id: Any = 1) throws -> Data {
    try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": id, "method": method, "params": params])
}

extension Integration {
    @Suite("Daemon breaker")
    struct DaemonBreakerTests {
        // MARK: Origin and DNS rebinding

        @Test("A DNS name that merely starts with 127. is not loopback: a rebound page is refused, over HTTP and WebSocket")
        func reboundLookalikeRefused() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            // What a page served from http://127.attacker.example:PORT sends once its name
            // resolves to 127.0.0.1 (attacker-controlled DNS, e.g. 127.0.0.1.nip.io).
            for name in ["127.attacker.example", "127.0.0.1.nip.io"] {
                let host = "\(name):\(rpc.port)"
                let origin = "http://\(host)"
                #expect(!RPCServer.Policy().allows(origin: origin, host: host), "\(name)")
                let body = String(decoding: try request("aria2.getVersion", ["token:\(rpc.secret)"]), as: UTF8.self)
                let answer = try rawPost(port: rpc.port, body: body, headerLines: ["Origin: \(origin)"], host: host)
                #expect(answer?.status == 403, "\(name): \(String(describing: answer))")
                let socket = try RawSocket(port: rpc.port)
                #expect(socket.upgrade(port: rpc.port, host: host, origin: origin) != 101, "\(name): WebSocket upgraded")
            }
        }

        @Test("The daemon's own loopback origins still pass; other sites and other loopback ports do not")
        func ownOriginsOnly() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let body = String(decoding: try request("aria2.getVersion", ["token:\(rpc.secret)"]), as: UTF8.self)
            let port = rpc.port
            #expect(try rawPost(port: port, body: body, headerLines: ["Origin: http://127.0.0.1:\(port)"])?.status == 200)
            #expect(try rawPost(port: port, body: body, headerLines: ["Origin: http://127.0.0.1:\(port + 1)"])?.status == 403)
            #expect(try rawPost(port: port, body: body, headerLines: ["Origin: null"])?.status == 403)
            #expect(try rawPost(port: port, body: body, headerLines: ["Origin: http://localhost.evil.example:\(port)"],
                                host: "localhost.evil.example:\(port)")?.status == 403)
            #expect(try rawPost(port: port, body: body, headerLines: ["Origin: http://evil.example"])?.status == 403)
            let socket = try RawSocket(port: port)
            #expect(socket.upgrade(port: port, origin: "http://evil.example") != 101)
        }

        // MARK: Tokens

        @Test("WebSocket frames a client must not send end the connection with a protocol error (1002), unanswered", arguments: [
            "unmasked", "reserved bit", "unknown opcode", "continuation first", "new message inside another",
        ])
        func webSocketFraming(kind: String) async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let socket = try RawSocket(port: rpc.port)
            #expect(socket.upgrade(port: rpc.port) == 101)
            let call = Array(try request("aria2.getVersion", ["token:test-secret-1234"]))
            switch kind {
            case "unmasked": socket.sendFrame(call, masked: false)
            case "reserved bit": socket.sendFrame(call, reserved: 4)
            case "unknown opcode": socket.sendFrame(call, opcode: 3)
            case "continuation first": socket.sendFrame(call, opcode: 0)
            default:
                socket.sendFrame(Array(call.prefix(5)), fin: false)
                socket.sendFrame(call)
            }
            let frame = try #require(socket.receiveFrame(), "\(kind): no answer")
            #expect(frame.opcode == 8 && frame.payload.prefix(2) == [0x03, 0xEA], "\(kind): \(frame)")
            #expect(socket.closedByPeer(), "\(kind)")
        }

        @Test("A wrong token over WebSocket is answered slowly too")
        func webSocketWrongTokenSlow() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let socket = try RawSocket(port: rpc.port)
            #expect(socket.upgrade(port: rpc.port) == 101)
            let started = ContinuousClock.now
            socket.sendFrame(Array(try request("aria2.getVersion", ["token:wrong-guess"])))
            let frame = try #require(socket.receiveFrame())
            #expect(String(decoding: frame.payload, as: UTF8.self).contains("Unauthorized"))
            #expect(ContinuousClock.now - started >= .milliseconds(400), "answered in \(ContinuousClock.now - started)")
        }

        @Test("system.multicall cannot be used to guess tokens at full speed: wrong tokens inside it are answered slowly")
        func multicallWrongTokenSlow() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            // At most 1000 calls are taken (more are refused at once, trying no token at all)...
            let tooMany = (0..<5000).map { ["methodName": "aria2.getVersion", "params": ["token:guess-\($0)"]] as [String: Any] }
            let refused = try await rpc.post(try request("system.multicall", [tooMany]))
            #expect(((refused.json as? [String: Any])?["error"] as? [String: Any])?["message"] as? String
                    == "system.multicall takes an array of at most 1000 calls")
            // ...and after a wrong token the rest are refused untried, and the answer is slow.
            let calls = (0..<1000).map { ["methodName": "aria2.getVersion", "params": ["token:guess-\($0)"]] as [String: Any] }
            let started = ContinuousClock.now
            let (status, json) = try await rpc.post(try request("system.multicall", [calls]))
            let elapsed = ContinuousClock.now - started
            #expect(status == 200)
            let results = (json as? [String: Any])?["result"] as? [Any]
            #expect(results?.count == 1000)
            #expect(results.map { $0.allSatisfy { ($0 as? [String: Any])?["message"] as? String == "Unauthorized" } } == true)
            #expect(elapsed >= .milliseconds(400), "1000 wrong tokens answered in \(elapsed)")
        }

        @Test("system.multicall cannot nest or skip the token, alone or inside a batch")
        func multicallNoBypass() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let nested: [[String: Any]] = [
                ["methodName": "system.multicall", "params": [[["methodName": "aria2.addUri", "params": [["http://127.0.0.1:9/x"]]]]]],
                ["methodName": "aria2.addUri", "params": [["http://127.0.0.1:9/y"]]],
                ["methodName": "aria2.addUri", "params": ["token:", ["http://127.0.0.1:9/z"]]],
                ["methodName": "aria2.addUri", "params": ["TOKEN:\(rpc.secret)", ["http://127.0.0.1:9/z"]]],
                ["methodName": "aria2.addUri", "params": ["token:\(rpc.secret)x", ["http://127.0.0.1:9/z"]]],
                ["methodName": "aria2.addUri", "params": ["token:\(rpc.secret.dropLast())", ["http://127.0.0.1:9/z"]]],
                ["methodName": "aria2.addUri", "params": ["token:\(rpc.secret)\u{0}", ["http://127.0.0.1:9/z"]]],
                ["methodName": "haul.acknowledge", "params": ["0000000000000001"]],
                ["methodName": "aria2.addUri", "params": ["x": "token:\(rpc.secret)"]],
            ]
            let result = try #require(try await rpc.call("system.multicall", [nested], token: "") as? [Any])
            #expect(result.count == nested.count)
            #expect(result.allSatisfy { $0 is [String: Any] }, "\(result)")
            let batch: [[String: Any]] = [
                ["jsonrpc": "2.0", "id": 1, "method": "system.multicall", "params": [nested]],
                ["jsonrpc": "2.0", "id": 2, "method": "aria2.addUri", "params": [["http://127.0.0.1:9/w"]]],
            ]
            _ = try await rpc.post(try JSONSerialization.data(withJSONObject: batch))
            let waiting = try #require(try await rpc.call("aria2.tellWaiting", [0, 10]) as? [Any])
            #expect(waiting.isEmpty, "\(waiting)")
        }

        // MARK: Crashes from numbers

        @Test("tellWaiting / tellStopped with a huge num answer (no arithmetic overflow crash)", arguments: ["aria2.tellWaiting", "aria2.tellStopped"])
        func hugeWindow(method: String) async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let daemon = try await DaemonProcess(scratch)
            defer { daemon.stop() }
            let rpc = daemon.rpc
            var gids: [String] = []
            for index in 0..<2 {
                gids.append(try #require(try await rpc.call("aria2.addUri", [["http://127.0.0.1:9/\(index)"], ["pause": "true"]]) as? String))
            }
            if method == "aria2.tellStopped" { for gid in gids { _ = try await rpc.call("aria2.remove", [gid]) } }
            let answer = try? await rpc.post(try request(method, ["token:\(rpc.secret)", 1, Int.max]))
            #expect(answer?.status == 200 && answer?.json is [String: Any], "no answer: the daemon died")
            #expect(daemon.isRunning, "the daemon crashed")
            if let result = (answer?.json as? [String: Any])?["result"] as? [Any] { #expect(result.count == 1) }
        }

        @Test("changePosition with a huge pos answers (no arithmetic overflow crash)", arguments: ["POS_CUR", "POS_END"])
        func hugePosition(how: String) async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let daemon = try await DaemonProcess(scratch)
            defer { daemon.stop() }
            let rpc = daemon.rpc
            var gids: [String] = []
            for index in 0..<2 {
                gids.append(try #require(try await rpc.call("aria2.addUri", [["http://127.0.0.1:9/\(index)"], ["pause": "true"]]) as? String))
            }
            let answer = try? await rpc.post(try request("aria2.changePosition", ["token:\(rpc.secret)", gids[1], Int.max, how]))
            #expect(answer?.status == 200 && answer?.json is [String: Any], "no answer: the daemon died")
            #expect(daemon.isRunning, "the daemon crashed")
            let negative = try? await rpc.post(try request("aria2.changePosition", ["token:\(rpc.secret)", gids[1], Int.min, how]))
            #expect(negative?.json is [String: Any])
            #expect(daemon.isRunning, "the daemon crashed")
        }

        // MARK: Malformed requests

        @Test("Malformed requests get a JSON-RPC error, never a crash, a hang or an empty body", arguments: [
            "", " ", "{", "[", "null", "1", "\"x\"", "true", "[]", "{}", "[[]]", "[null,1,\"x\",[]]",
            String(repeating: "[", count: 200_000) + String(repeating: "]", count: 200_000),
            String(repeating: "{\"a\":", count: 100_000) + "1" + String(repeating: "}", count: 100_000),
            "{\"jsonrpc\":\"2.0\",\"id\":1e400,\"method\":\"aria2.getVersion\",\"params\":[\"token:test-secret-1234\"]}",
            "{\"jsonrpc\":\"2.0\",\"id\":123456789012345678901234567890,\"method\":\"aria2.getVersion\",\"params\":[\"token:test-secret-1234\"]}",
            "{\"jsonrpc\":\"2.0\",\"id\":-1e-400,\"method\":\"aria2.tellActive\",\"params\":[\"token:test-secret-1234\"]}",
            "{\"jsonrpc\":\"2.0\",\"id\":NaN,\"method\":\"aria2.getVersion\"}",
            "{\"jsonrpc\":\"2.0\",\"id\":\"\\ud800\",\"method\":\"aria2.getVersion\",\"params\":[\"token:test-secret-1234\"]}",
            "{\"jsonrpc\":\"2.0\",\"id\":{\"a\":[1]},\"method\":\"aria2.tellActive\",\"params\":[\"token:test-secret-1234\"]}",
            "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"system.listMethods\"}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":12}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.tellWaiting\",\"params\":[\"token:test-secret-1234\",1e300,\"x\"]}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.tellWaiting\",\"params\":[\"token:test-secret-1234\",-9223372036854775808,9223372036854775807]}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.addUri\",\"params\":[\"token:test-secret-1234\",[\"http://127.0.0.1:9/x\"],{\"split\":1e400}]}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.addUri\",\"params\":[\"token:test-secret-1234\",[\"http://127.0.0.1:9/x\"],{\"pause\":true,\"split\":[1]},99999999999999999999]}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.addUri\",\"params\":[\"token:test-secret-1234\",[1,2],{}]}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.changeGlobalOption\",\"params\":[\"token:test-secret-1234\",{\"max-concurrent-downloads\":\"99999999999999999999999\"}]}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.tellStatus\",\"params\":[\"token:test-secret-1234\",\"0000000000000001\",[1,{}]]}",
            "\u{FEFF}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"system.listMethods\"}",
            "[" + Array(repeating: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"system.listMethods\"}", count: 1001).joined(separator: ",") + "]",
        ])
        func malformed(body: String) async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let daemon = try await DaemonProcess(scratch, secret: "test-secret-1234")
            defer { daemon.stop() }
            let answer = try rawPost(port: daemon.port, body: body)
            #expect(answer?.status == 200, "no answer")
            let json = answer.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) }
            #expect(json != nil, "not JSON: \(answer?.body.prefix(200) ?? "")")
            if let object = json as? [String: Any] {
                #expect(object["error"] != nil || object["result"] != nil, "\(object)")
            } else {
                #expect((json as? [Any])?.allSatisfy { ($0 as? [String: Any]).map { $0["error"] != nil || $0["result"] != nil } ?? false } == true)
            }
            #expect(daemon.isRunning, "the daemon crashed")
        }

        // MARK: Size limits

        @Test("Bodies over 1 MiB are refused (declared or chunked); WebSocket messages over it close the socket")
        func sizeLimits() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let port = rpc.port
            // Declared too large: refused from the head (no need to send it).
            let declared = try RawSocket(port: port)
            declared.send("POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048577\r\n\r\n")
            declared.send([UInt8](repeating: 0x20, count: 1_048_577))
            #expect(declared.httpResponse()?.status == 413)
            // Chunked, no length: refused once it passes the limit.
            let chunked = try RawSocket(port: port)
            chunked.send("POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            let chunk = [UInt8](repeating: 0x20, count: 65536)
            for _ in 0..<17 { chunked.send("10000\r\n"); chunked.send(chunk); chunked.send("\r\n") }
            chunked.send("0\r\n\r\n")
            #expect(chunked.httpResponse()?.status == 413)
            // One frame too large.
            let single = try RawSocket(port: port)
            #expect(single.upgrade(port: port) == 101)
            // Only the frame's head and a little of it: the length alone must end the socket.
            let length = UInt64((1 << 20) + 1)
            var head: [UInt8] = [0x81, 0x80 | 127]
            for shift in stride(from: 56, through: 0, by: -8) { head.append(UInt8((length >> UInt64(shift)) & 0xff)) }
            head += [1, 2, 3, 4, 0x20]
            single.send(head)
            #expect(single.closedByPeer())
            // Fragments adding up to too much.
            let fragments = try RawSocket(port: port)
            #expect(fragments.upgrade(port: port) == 101)
            fragments.sendFrame(Array("[".utf8) + [UInt8](repeating: 0x20, count: 600_000), fin: false)
            fragments.sendFrame([UInt8](repeating: 0x20, count: 600_000), opcode: 0, fin: false)
            #expect(fragments.receiveFrame()?.opcode == 8)
            #expect(fragments.closedByPeer())
            // Huge header block: refused, daemon fine.
            let headers = try RawSocket(port: port)
            headers.send("POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: \(String(repeating: "a", count: 300_000))\r\n\r\n")
            let refused = headers.httpResponse()
            #expect(refused == nil || refused!.status >= 400)
            #expect(try await rpc.call("aria2.getVersion") is [String: Any])
        }

        // MARK: Slow and vanishing clients

        @Test("Slowloris: 300 connections dripping their headers do not keep another client from being served")
        func slowloris() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            try await servedDespiteSlowClients(port: rpc.port, secret: rpc.secret, slow: 300)
        }

        @Test("Slowloris against a daemon with a small descriptor limit (256, as under ulimit): another client is still served")
        func slowlorisUnderDescriptorLimit() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let daemon = try await DaemonProcess(scratch, fileLimit: 256)
            defer { daemon.stop() }
            try await servedDespiteSlowClients(port: daemon.port, secret: daemon.rpc.secret, slow: 300)
        }

        /// Opens `slow` connections that send a header byte every 100 ms, then expects one normal
        /// call to be answered within 7 s.
        private func servedDespiteSlowClients(port: Int, secret: String, slow: Int) async throws {
            var sockets: [RawSocket] = []
            let opening = ContinuousClock.now
            while sockets.count < slow, ContinuousClock.now - opening < .seconds(3) {
                guard let socket = try? RawSocket(port: port, timeout: 0.5) else {
                    try await Task.sleep(for: .milliseconds(20))
                    continue
                }
                socket.send("POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                sockets.append(socket)
            }
            #expect(sockets.count == slow, "only \(sockets.count) of \(slow) slow connections opened")
            let body = try request("aria2.getVersion", ["token:\(secret)"])
            let started = ContinuousClock.now
            var answered = false
            while !answered, ContinuousClock.now - started < .seconds(7) {
                if let client = try? RawSocket(port: port, timeout: 0.3) {
                    client.send("POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n\r\n")
                    client.send(Array(body))
                    // Keep dripping while waiting for the answer.
                    for _ in 0..<10 where !answered && ContinuousClock.now - started < .seconds(7) {
                        for socket in sockets { socket.send("a") }
                        if let response = client.httpResponse() { answered = response.status == 200 }
                    }
                } else {
                    for socket in sockets { socket.send("a") }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(answered, "not served within 7 s while \(sockets.count) slow clients held connections")
        }

        @Test("Clients vanishing mid-request, mid-response and while a wrong token waits do not hurt the daemon")
        func vanishingClients() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let daemon = try await DaemonProcess(scratch)
            defer { daemon.stop() }
            let rpc = daemon.rpc
            for index in 0..<50 {
                _ = try await rpc.call("aria2.addUri", [["http://127.0.0.1:9/\(index)"], ["pause": "true"]])
            }
            let list = try request("aria2.tellWaiting", ["token:\(rpc.secret)", 0, 1000])
            let wrong = try request("aria2.getVersion", ["token:wrong"])
            for _ in 0..<100 {
                let half = try RawSocket(port: daemon.port)
                half.send("POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"")
                let reset = try RawSocket(port: daemon.port)
                reset.send("POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: \(list.count)\r\n\r\n")
                reset.send(Array(list))
                var abort = linger(l_onoff: 1, l_linger: 0)
                setsockopt(reset.fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
                let slow = try RawSocket(port: daemon.port)
                slow.send("POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: \(wrong.count)\r\n\r\n")
                slow.send(Array(wrong))
                let socket = try RawSocket(port: daemon.port)
                #expect(socket.upgrade(port: daemon.port) == 101)
                socket.sendFrame(Array(list))
            }
            try await Task.sleep(for: .milliseconds(700))
            #expect(daemon.isRunning)
            #expect(try await rpc.call("aria2.getVersion") is [String: Any])
        }

        // MARK: Confinement

        @Test("Tricky out names: refused, or one plain name directly in the root", arguments: [
            "a\u{0}b", "\u{202E}txt.exe", "a\u{2215}b", "\u{FF0E}\u{FF0E}", "..\u{200B}", "\u{200B}..", ".\u{0338}.",
            "a\\..\\b", "..\\..\\etc", "%2e%2e%2fx", "con", " ", " .x", "\t", "a\nb", "x/", "/", "./x",
            String(repeating: "é", count: 127), String(repeating: "é", count: 128), String(repeating: "a", count: 256),
            "\u{0130}\u{0307}", "ﬁle", "a\u{FEFF}", "~", "~root", "-rf",
        ])
        func trickyOut(name: String) async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let daemon = try await DaemonProcess(scratch)
            defer { daemon.stop() }
            let rpc = daemon.rpc
            let root = scratch.file("root").path
            if let gid = try? await rpc.call("aria2.addUri", [["http://127.0.0.1:9/x"], ["out": name, "pause": "true"]]) as? String {
                let files = try #require(try await rpc.call("aria2.getFiles", [gid]) as? [[String: Any]])
                let path = try #require(files.first?["path"] as? String)
                let stored = String(path.dropFirst(root.count + 1))
                #expect(path.hasPrefix(root + "/") && PlacementRoot.isValidName(stored) && !stored.hasPrefix("."), "\(path)")
                #expect(stored.utf8.count <= 255)
            }
            #expect(daemon.isRunning, "the daemon crashed")
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.url.path).sorted() == ["root", "state"])
        }

        @Test("dir may only be the root itself, however it is spelled", arguments: [
            "/", "/tmp", "", ".", "..", "root", "/proc/self/cwd", "\u{0}", "ROOT/\u{0}/../..", "ROOT/../root2", "ROOT\u{0}/../..",
            "LINK", "LINK/..", "ROOT/./../state",
        ])
        func trickyDir(spelling: String) async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let daemon = try await DaemonProcess(scratch)
            defer { daemon.stop() }
            let rpc = daemon.rpc
            try FileManager.default.createSymbolicLink(atPath: scratch.file("link").path, withDestinationPath: scratch.url.path)
            let dir = spelling.replacingOccurrences(of: "ROOT", with: scratch.file("root").path)
                .replacingOccurrences(of: "LINK", with: scratch.file("link").path)
            if let gid = try? await rpc.call("aria2.addUri", [["http://127.0.0.1:9/x"], ["dir": dir, "out": "f.bin", "pause": "true"]]) as? String {
                let files = try #require(try await rpc.call("aria2.getFiles", [gid]) as? [[String: Any]])
                #expect(files.first?["path"] as? String == scratch.file("root/f.bin").path)
            }
            #expect(daemon.isRunning, "the daemon crashed")
        }

        @Test("A symbolic link planted in the root under the wanted name is never written through")
        func plantedLink() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 300_000, seed: 900)
            server.serve(ServedFile(content: content), at: "/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            try FileManager.default.createDirectory(at: scratch.file("outside"), withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: scratch.file("root/planted.bin").path,
                                                       withDestinationPath: scratch.file("outside/target.bin").path)
            try FileManager.default.createSymbolicLink(atPath: scratch.file("root/.late.bin.haul-part").path,
                                                       withDestinationPath: scratch.file("outside/part.bin").path)
            let first = try #require(try await rpc.call("aria2.addUri", [[server.url("/f.bin").absoluteString], ["out": "planted.bin"]]) as? String)
            let second = try #require(try await rpc.call("aria2.addUri", [[server.url("/f.bin").absoluteString], ["out": "late.bin"]]) as? String)
            _ = try await rpc.waitStopped(first, seconds: 8)
            _ = try await rpc.waitStopped(second, seconds: 8)
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.file("outside").path).isEmpty)
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: scratch.file("root/planted.bin").path)
                == scratch.file("outside/target.bin").path)
        }

        @Test("A file that appears under the name after addUri is not overwritten")
        func lateFileKept() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 200_000, seed: 901)), at: "/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let gid = try #require(try await rpc.call("aria2.addUri", [[server.url("/f.bin").absoluteString], ["out": "race.bin", "pause": "true"]]) as? String)
            try Data("mine".utf8).write(to: scratch.file("root/race.bin"))
            _ = try await rpc.call("aria2.unpause", [gid])
            _ = try await rpc.waitStopped(gid, seconds: 8)
            #expect(try String(contentsOf: scratch.file("root/race.bin"), encoding: .utf8) == "mine")
        }

        @Test("A taken 255-byte name still gets a distinct name that works (or is refused), never a name too long to publish")
        func longNameTaken() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 100_000, seed: 902)
            server.serve(ServedFile(content: content), at: "/f.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let long = String(repeating: "a", count: 251) + ".bin"
            try Data("mine".utf8).write(to: scratch.file("root/\(long)"))
            guard let gid = try? await rpc.call("aria2.addUri", [[server.url("/f.bin").absoluteString], ["out": long]]) as? String else {
                return  // refused: acceptable
            }
            let status = try await rpc.waitStopped(gid, seconds: 8)
            #expect(status["status"] as? String == "complete", "\(status["errorMessage"] ?? "")")
            #expect(try String(contentsOf: scratch.file("root/\(long)"), encoding: .utf8) == "mine")
        }

        @Test("Mirrors must be http or https like the first URI")
        func mirrorSchemes() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            for mirror in ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:9/x", "not a url"] {
                await #expect(throws: RPCFailure.self, "\(mirror) accepted") {
                    _ = try await rpc.call("aria2.addUri", [["http://127.0.0.1:9/x", mirror], ["pause": "true"]])
                }
            }
        }

        // MARK: Durability and the queue

        @Test("Every answered addUri survives a restart, even when the saved queue grows past 64 MiB")
        func largeQueueSurvives() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (first, rpc) = try await startDaemon(scratch)
            // Slashes are stored escaped (\/): ~2 MB of queue.json per call, under the 1 MiB body
            // limit (the body is written by hand: JSONSerialization would escape them too).
            let pad = String(repeating: "/", count: 1_000_000)
            var accepted = 0
            for index in 0..<36 {
                let body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"aria2.addUri\",\"params\":[\"token:\(rpc.secret)\","
                    + "[\"http://127.0.0.1:9/\(index)\"],{\"pause\":\"true\",\"header\":\"X-Pad: \(pad)\"}]}"
                let (status, json) = try await rpc.post(Data(body.utf8))
                if status == 200, ((json as? [String: Any])?["result"] as? String) != nil { accepted += 1 }
            }
            await first.stop()
            guard let restarted = try? await startDaemon(scratch) else { return }  // refusing to start is acceptable
            let (second, again) = restarted
            defer { Task { await second.stop() } }
            let stat = try #require(try await again.call("aria2.getGlobalStat") as? [String: String])
            #expect(stat["numWaiting"] == "\(accepted)", "answered \(accepted) addUri calls, \(stat["numWaiting"] ?? "?") after restart")
        }

        @Test("Raising max-concurrent-downloads starts waiting downloads at once, as aria2 does")
        func raisingConcurrencyStarts() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 903), bytesPerSecond: 256 << 10), at: "/slow.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            _ = try await rpc.call("aria2.changeGlobalOption", [["max-concurrent-downloads": "1"]])
            let a = try #require(try await rpc.call("aria2.addUri", [[server.url("/slow.bin").absoluteString], ["out": "a.bin"]]) as? String)
            let b = try #require(try await rpc.call("aria2.addUri", [[server.url("/slow.bin").absoluteString], ["out": "b.bin"]]) as? String)
            #expect(try await rpc.status(a)["status"] as? String == "active")
            #expect(try await rpc.status(b)["status"] as? String == "waiting")
            _ = try await rpc.call("aria2.changeGlobalOption", [["max-concurrent-downloads": "2"]])
            var state = ""
            for _ in 0..<20 where state != "active" {
                try await Task.sleep(for: .milliseconds(100))
                state = try await rpc.status(b)["status"] as? String ?? ""
            }
            #expect(state == "active", "still \(state) 2 s after raising the limit")
            _ = try await rpc.call("aria2.remove", [a])
            _ = try await rpc.call("aria2.remove", [b])
        }

        @Test("The made secret, the given secret, the queue and the endpoint are 0600 in a 0700 state directory")
        func fileModes() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try FileManager.default.createDirectory(at: scratch.file("root"), withIntermediateDirectories: true)
            func mode(_ path: String) throws -> Int {
                try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int ?? -1
            }
            for given in [nil, "given-secret-123"] as [String?] {
                var settings = HaulDaemon.Daemon.Settings(root: scratch.file("root"))
                settings.stateDirectory = scratch.file("state").path
                settings.port = 0
                settings.secret = given
                settings.socketPath = scratch.file("run/rpc.sock").path
                let daemon = try await HaulDaemon.Daemon.start(settings)
                let rpc = RPCClient(port: daemon.port, secret: daemon.secret)
                _ = try await rpc.call("aria2.addUri", [["http://127.0.0.1:9/x"], ["pause": "true"]])
                let state = scratch.file("state").path
                #expect(try mode(state) == 0o700)
                var names = ["queue.json", "rpc-endpoint", "rpc-secret"]
                if given != nil { names.append("rpc-secret-given") }
                for name in names { #expect(try mode(state + "/" + name) == 0o600, "\(name)") }
                #expect(try mode(scratch.file("run/rpc.sock").path) == 0o600)
                #expect(try mode(scratch.file("run").path) == 0o700)
                await daemon.stop()
            }
        }
    }
}
