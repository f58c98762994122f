import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// aria2's JSON-RPC over HTTP (`POST /jsonrpc`) on SwiftNIO: loopback by default, a size limit,
/// foreign `Origin`s refused, wrong tokens answered slowly.
final class RPCServer: Sendable {
    let channel: any Channel
    /// The Unix-socket listener, when one was asked for.
    let local: (any Channel)?
    /// The TCP port the server listens on.
    let port: Int

    struct Policy: Sendable {
        /// Largest request body accepted.
        var maximumBodyBytes = 1 << 20
        /// Origins whose browser pages may call (anything else with an `Origin` header is refused).
        var allowedOrigins: Set<String> = []
        /// How long an answer to a wrong token waits.
        var unauthorizedDelay: TimeAmount = .milliseconds(500)
        /// How long a request may take to arrive whole (and a kept-alive connection may idle).
        var requestDeadline: TimeAmount = .seconds(10)

        /// Whether a request with `Origin: origin` and `Host: host` may call: an allowed origin,
        /// or the daemon's own loopback address (what aria2's clients send on WebSocket). A page
        /// from another site cannot have that origin, and a DNS-rebound name is not a loopback
        /// host, so neither gets in.
        func allows(origin: String?, host: String?) -> Bool {
            guard let origin else { return true }
            if allowedOrigins.contains(origin) { return true }
            guard let host, Self.isLoopback(host) else { return false }
            return origin == "http://\(host)"
        }

        /// `localhost`, or an IP literal in 127.0.0.0/8 or `::1` (never a name that merely
        /// starts with `127.`, which anyone can register).
        static func isLoopback(_ host: String) -> Bool {
            let name = host.hasPrefix("[") ? String(host.prefix { $0 != "]" }.dropFirst()) : String(host.prefix { $0 != ":" })
            if name == "localhost" { return true }
            var v4 = in_addr()
            if inet_pton(AF_INET, name, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
            var v6 = in6_addr()
            if inet_pton(AF_INET6, name, &v6) == 1 { return name == "::1" || name == "0:0:0:0:0:0:0:1" }
            return false
        }
    }

    private init(channel: any Channel, local: (any Channel)?, port: Int) {
        self.channel = channel
        self.local = local
        self.port = port
    }

    /// Listens on `host:port`, and on the Unix socket `socketPath` (mode 0600, in a 0700
    /// directory) when given; the same protocol and checks on both.
    static func start(host: String, port: Int, socketPath: String? = nil, service: RPCService, hub: NotificationHub,
                      policy: Policy) async throws -> RPCServer {
        ConnectionGuard.raiseDescriptorLimit()
        let guarded = ConnectionGuard()
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { channel in
                guarded.admit(channel)
                // `GET /jsonrpc` with an Upgrade becomes JSON-RPC over WebSocket, with the same
                // Origin rule; anything else stays HTTP.
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: policy.maximumBodyBytes,
                    shouldUpgrade: { channel, head in
                        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                        let allowed = path == "/jsonrpc"
                            && policy.allows(origin: head.headers.first(name: "origin"), host: head.headers.first(name: "host"))
                        return channel.eventLoop.makeSucceededFuture(allowed ? HTTPHeaders() : nil)
                    },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                WebSocketRPCHandler(service: service, hub: hub, maximumBytes: policy.maximumBodyBytes,
                                                    unauthorizedDelay: policy.unauthorizedDelay))
                        }
                    })
                let http = RPCHTTPHandler(service: service, policy: policy, guarded: guarded)
                return channel.eventLoop.makeCompletedFuture {
                    let bound = NIOLoopBound(http, eventLoop: channel.eventLoop)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { context in
                            context.pipeline.syncOperations.removeHandler(bound.value, promise: nil)
                        }),
                        withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(http)
                }
            }
        let channel = try await bootstrap.bind(host: host, port: port).get()
        guard let bound = channel.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        var local: (any Channel)?
        if let socketPath {
            let directory = (socketPath as NSString).deletingLastPathComponent
            _ = mkdir(directory, 0o700)
            // Created private: no other user may even connect.
            let previous = umask(0o177)
            defer { umask(previous) }
            local = try await bootstrap.bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true).get()
            chmod(socketPath, 0o600)
        }
        return RPCServer(channel: channel, local: local, port: bound)
    }

    func shutdown() async {
        try? await channel.close()
        try? await local?.close()
    }
}

/// One connection's requests: checks, then the body goes to the service on its queue.
final class RPCHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: RPCService
    private let policy: RPCServer.Policy
    private let guarded: ConnectionGuard
    /// Closes the connection if the next request has not arrived whole in time.
    private var deadline: Scheduled<Void>?
    private var head: HTTPRequestHead?
    private var body = Data()
    private var refused: (HTTPResponseStatus, String)?
    /// A request waiting for the socket to take more before it is answered.
    private var held: (HTTPRequestHead, Data)?

    init(service: RPCService, policy: RPCServer.Policy, guarded: ConnectionGuard) {
        self.service = service
        self.policy = policy
        self.guarded = guarded
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armDeadline(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    private func armDeadline(_ context: ChannelHandlerContext) {
        deadline?.cancel()
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: policy.requestDeadline) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
            body = Data()
            refused = check(request)
        case .body(var buffer):
            guard refused == nil else { return }
            if body.count + buffer.readableBytes > policy.maximumBodyBytes {
                refused = (.payloadTooLarge, "request larger than \(policy.maximumBodyBytes) bytes")
                body = Data()
                return
            }
            body.append(contentsOf: buffer.readBytes(length: buffer.readableBytes) ?? [])
        case .end:
            guard let request = head else { return }
            head = nil
            deadline?.cancel()
            deadline = nil
            guarded.served(context.channel)
            if let (status, message) = refused {
                respond(context: context, request: request, status: status, body: Data(message.utf8), type: "text/plain")
                return
            }
            if request.method == .OPTIONS {
                respond(context: context, request: request, status: .noContent, body: Data(), type: nil)
                return
            }
            // A client that does not read its answers gets its next one only once the socket
            // takes more: the daemon never piles up answers for it.
            guard context.channel.isWritable else {
                held = (request, body)
                return
            }
            serve(request, body, context: context)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let (request, payload) = held {
            held = nil
            serve(request, payload, context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Runs the request's calls on the queue and answers.
    private func serve(_ request: HTTPRequestHead, _ payload: Data, context: ChannelHandlerContext) {
        let loop = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let service = self.service
        let delay = policy.unauthorizedDelay
        service.downloads.queue.async {
            let (answer, unauthorized) = service.handle(payload)
            loop.eventLoop.execute {
                let (handler, context) = loop.value
                guard unauthorized else {
                    handler.respond(context: context, request: request, status: .ok, body: answer, type: "application/json")
                    return
                }
                context.eventLoop.scheduleTask(in: delay) {
                    let (handler, context) = loop.value
                    handler.respond(context: context, request: request, status: .ok, body: answer, type: "application/json")
                }
            }
        }
    }

    /// Why a request is refused before its body is read, or `nil`.
    private func check(_ request: HTTPRequestHead) -> (HTTPResponseStatus, String)? {
        if let origin = request.headers.first(name: "origin"),
           !policy.allows(origin: origin, host: request.headers.first(name: "host")) {
            return (.forbidden, "origin \(origin) is not allowed (start the daemon with --allow-origin \(origin))")
        }
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        guard path == "/jsonrpc" else { return (.notFound, "the RPC endpoint is /jsonrpc") }
        guard request.method == .POST || request.method == .OPTIONS else {
            return (.methodNotAllowed, "use POST with a JSON-RPC body")
        }
        if let length = request.headers.first(name: "content-length").flatMap(Int.init), length > policy.maximumBodyBytes {
            return (.payloadTooLarge, "request larger than \(policy.maximumBodyBytes) bytes")
        }
        return nil
    }

    private func respond(context: ChannelHandlerContext, request: HTTPRequestHead, status: HTTPResponseStatus,
                         body: Data, type: String?) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "\(body.count)")
        if let type { headers.add(name: "Content-Type", value: type) }
        if let origin = request.headers.first(name: "origin"), policy.allowedOrigins.contains(origin) {
            headers.add(name: "Access-Control-Allow-Origin", value: origin)
            headers.add(name: "Access-Control-Allow-Methods", value: "POST, OPTIONS")
            headers.add(name: "Access-Control-Allow-Headers", value: "Content-Type")
            headers.add(name: "Vary", value: "Origin")
        }
        let keepAlive = request.isKeepAlive && status == .ok
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                      promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
        if keepAlive { armDeadline(context) }
    }
}
