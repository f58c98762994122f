import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An in-process HTTP/1.1 server on loopback for tests, benchmarks and the demo.
///
/// Serves `ServedFile`s (generated content) with single `Range` requests, validators,
/// per-connection rate limits, a first-byte delay and scripted faults, and records every request.
public final class TestServer: Sendable {
    /// The TCP port the server listens on.
    public let port: Int
    public let host: String
    private let channel: any Channel
    let core: ServerCore

    private init(host: String, port: Int, channel: any Channel, core: ServerCore) {
        self.host = host
        self.port = port
        self.channel = channel
        self.core = core
    }

    /// Starts a server on `host` (loopback by default) and an ephemeral port.
    public static func start(host: String = "127.0.0.1", port: Int = 0) async throws -> TestServer {
        let core = ServerCore()
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let connection = core.nextConnection()
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(FileHandler(core: core, connection: connection))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        guard let bound = channel.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return TestServer(host: host, port: bound, channel: channel, core: core)
    }

    /// Serves `file` at `path` (e.g. `/big.bin`), replacing what was there.
    public func serve(_ file: ServedFile, at path: String) {
        core.state.withLockedValue { $0.files[path] = file }
    }

    /// Serves the text `document` (a metalink, say) at `path`, always whole with `200`.
    public func serve(document: String, contentType: String, at path: String) {
        core.state.withLockedValue { $0.documents[path] = (document, contentType) }
    }

    /// The URL of `path` on this server.
    public func url(_ path: String) -> URL {
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        return URL(string: "http://\(authority)\(path)")!
    }

    /// Every request received so far, in order.
    public var requests: [RecordedRequest] {
        core.state.withLockedValue { $0.requests }
    }

    /// The body bytes each request from `index` on was sent, as ranges of the file.
    public func sentRanges(from index: Int = 0) -> [Range<Int64>] {
        core.state.withLockedValue { state in
            state.sent[min(index, state.sent.count)...].filter { $0.count > 0 }.map { $0.start..<($0.start + $0.count) }
        }
    }

    /// The most connections that were open at once.
    public var peakOpenConnections: Int {
        core.state.withLockedValue { $0.peakOpen }
    }

    /// Body bytes sent so far, all requests together.
    public var bytesSent: Int64 {
        core.state.withLockedValue { $0.sent.reduce(0) { $0 + $1.count } }
    }

    /// Connections accepted so far.
    public var connectionCount: Int {
        core.state.withLockedValue { $0.connections }
    }

    /// Stops listening. Open connections end when their clients close them.
    public func shutdown() async {
        try? await channel.close()
    }
}

/// The server's shared, lock-guarded state.
final class ServerCore: Sendable {
    struct State {
        var files: [String: ServedFile] = [:]
        /// Text documents by path, with their content type.
        var documents: [String: (text: String, contentType: String)] = [:]
        var requests: [RecordedRequest] = []
        /// Per request: first byte of its body and how many body bytes were sent.
        var sent: [(start: Int64, count: Int64)] = []
        var connections = 0
        /// Connections open now, and the most open at once.
        var open = 0
        var peakOpen = 0
    }

    func connectionOpened() {
        state.withLockedValue {
            $0.open += 1
            $0.peakOpen = max($0.peakOpen, $0.open)
        }
    }

    func connectionClosed() {
        state.withLockedValue { $0.open -= 1 }
    }

    func recordSent(request: Int, bytes: Int) {
        state.withLockedValue { $0.sent[request].count += Int64(bytes) }
    }

    let state = NIOLockedValueBox(State())

    func nextConnection() -> Int {
        state.withLockedValue { state in
            state.connections += 1
            return state.connections
        }
    }

    /// Decides the response to a request, records it, and uses up any fault it triggers.
    func plan(for head: HTTPRequestHead, connection: Int) -> ResponsePlan {
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        let range = head.headers.first(name: "range")
        let ifRange = head.headers.first(name: "if-range")
        return state.withLockedValue { state in
            var headers: [String: String] = [:]
            for (name, value) in head.headers { headers[name.lowercased()] = value }
            state.requests.append(RecordedRequest(method: head.method.rawValue, path: path, range: range,
                                                  ifRange: ifRange, connection: connection, headers: headers,
                                                  target: head.uri))
            let index = state.requests.count - 1
            state.sent.append((0, 0))
            if let document = state.documents[path] { return .document(document.text, contentType: document.contentType) }
            guard var file = state.files[path] else { return .error(.notFound, retryAfter: nil) }
            let requested = range.map { RangeRequest(header: $0, size: file.content.size) } ?? .none
            let start: Int64 = if case .satisfiable(let r) = requested { r.lowerBound } else { 0 }
            var fault: Fault.Kind?
            if let index = file.faults.firstIndex(where: { $0.times > 0 && start >= $0.minimumOffset }) {
                fault = file.faults[index].kind
                file.faults[index].times -= 1
                state.files[path] = file
            }
            if case .status(let code, let retryAfter) = fault {
                return .error(HTTPResponseStatus(statusCode: code), retryAfter: retryAfter)
            }
            var plan = ResponsePlan(file: file, requested: requested, ifRange: ifRange, fault: fault,
                                    connection: connection, isHead: head.method == .HEAD)
            plan.requestIndex = index
            state.sent[index].start = plan.body.lowerBound
            return plan
        }
    }
}

