import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// An in-process HTTP/1.1 server on loopback that can lie at any level of the protocol.
///
/// Requests are parsed by NIO's `HTTPRequestDecoder`; answers are written as raw bytes (no
/// response encoder), so a `ScenarioBehaviour` can send wrong status lines, contradictory
/// headers, shifted or short bodies, chunked framing with a `Content-Length`, junk after a
/// response, resets, stalls and trickles. Every request is recorded. Every connection is closed
/// within 60 s of a stall or of the start of a response, and all of them by `shutdown()`.
public final class ScenarioServer: Sendable {
    /// The TCP port the server listens on.
    public let port: Int
    /// The address the server listens on.
    public let host: String
    private let channel: any Channel
    private let core: ScenarioCore

    private init(host: String, port: Int, channel: any Channel, core: ScenarioCore) {
        self.host = host
        self.port = port
        self.channel = channel
        self.core = core
    }

    /// Starts a server acting out `behaviour` on `host` (loopback by default) and an ephemeral port.
    public static func start(_ behaviour: ScenarioBehaviour, host: String = "127.0.0.1") async throws -> ScenarioServer {
        let core = ScenarioCore(behaviour: behaviour)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let connection = core.connectionOpened(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes))
                    try channel.pipeline.syncOperations.addHandler(decoder)
                    try channel.pipeline.syncOperations.addHandler(RawResponseHandler(core: core, connection: connection))
                }
            }
        let channel = try await bootstrap.bind(host: host, port: 0).get()
        guard let bound = channel.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return ScenarioServer(host: host, port: bound, channel: channel, core: core)
    }

    /// The URL of `path` on this server.
    public func url(_ path: String) -> URL {
        URL(string: "http://\(host):\(port)\(path)")!
    }

    /// Every request received so far, in order.
    public var requests: [ScenarioRequest] {
        core.state.withLockedValue { $0.requests }
    }

    /// Connections accepted so far.
    public var connectionCount: Int {
        core.state.withLockedValue { $0.connections }
    }

    /// Stops listening and closes every open connection.
    public func shutdown() async {
        try? await channel.close()
        let open = core.state.withLockedValue { Array($0.open.values) }
        for channel in open { try? await channel.close() }
    }
}
