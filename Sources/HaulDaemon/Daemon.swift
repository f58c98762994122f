import Foundation
import Haul
import Logging

/// The haul daemon: a durable download queue inside one download root, served over aria2's
/// JSON-RPC so aria2's clients work unchanged.
public final class Daemon: @unchecked Sendable {
    // Unchecked: every stored property is set once in init; the ticker is only cancelled.
    /// How the daemon is set up.
    public struct Settings: Sendable {
        /// The only directory downloads are written to.
        public var root: URL
        /// Where the queue and the RPC secret live (default: `$XDG_STATE_HOME/haul`).
        public var stateDirectory: String?
        public var host = "127.0.0.1"
        /// 0 picks a free port; aria2's default is 6800.
        public var port = 6800
        /// The RPC secret; default: made once and kept (0600) in the state directory.
        public var secret: String?
        public var maxConcurrentDownloads = 5
        /// Browser origins allowed to call (e.g. an AriaNg page).
        public var allowedOrigins: Set<String> = []
        /// A Unix socket to listen on too (mode 0600); default `$XDG_RUNTIME_DIR/haul/rpc.sock`,
        /// none when that variable is unset. The token is required there as well.
        public var socketPath: String? = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"]
            .flatMap { $0.hasPrefix("/") ? $0 + "/haul/rpc.sock" : nil }
        /// Settings for every download (connections, retries, TLS, …).
        public var downloads = DownloadSession.Configuration()

        public init(root: URL) {
            self.root = root
        }
    }

    /// The TCP port the RPC server listens on.
    public let port: Int
    /// The secret clients pass as `token:SECRET`.
    public let secret: String
    private let server: RPCServer
    private let downloads: DownloadQueue
    private let ticker: DispatchSourceTimer

    private init(port: Int, secret: String, server: RPCServer, downloads: DownloadQueue, ticker: DispatchSourceTimer) {
        self.port = port
        self.secret = secret
        self.server = server
        self.downloads = downloads
        self.ticker = ticker
    }

    /// Loads the saved queue, starts what should run and begins serving.
    public static func start(_ settings: Settings, logger: Logger = Logger(label: "haul.daemon"),
                             onShutdown: @escaping @Sendable () -> Void = {}) async throws -> Daemon {
        guard let state = StateDirectory.open(settings.stateDirectory) else { throw DaemonError.noStateDirectory }
        let secret: String
        if let given = settings.secret {
            secret = given
        } else {
            guard let bytes = StateDirectory.secret("rpc-secret", in: state) else {
                throw DaemonError.noSecret(state.location(of: "rpc-secret"))
            }
            secret = bytes.map { String(format: "%02x", $0) }.joined()
        }
        let downloads = try DownloadQueue(root: settings.root, store: StateStore(root: state),
                                          configuration: settings.downloads,
                                          maxConcurrent: settings.maxConcurrentDownloads, logger: logger)
        let service = RPCService(downloads: downloads, secret: secret)
        service.onShutdown = onShutdown
        var policy = RPCServer.Policy()
        policy.allowedOrigins = settings.allowedOrigins
        let hub = NotificationHub()
        downloads.onEvent = { method, gid in hub.broadcast(method, gid: gid) }
        let server = try await RPCServer.start(host: settings.host, port: settings.port, socketPath: settings.socketPath,
                                               service: service, hub: hub, policy: policy)
        let ticker = DispatchSource.makeTimerSource(queue: downloads.queue)
        ticker.schedule(deadline: .now() + 1, repeating: 1)
        ticker.setEventHandler { downloads.tick() }
        ticker.activate()
        downloads.start()
        // Where local clients (haul add, ls, …) find this daemon; the secret sits beside it.
        var endpointFields: [String: Any] = ["host": settings.host, "port": server.port]
        if let socket = settings.socketPath { endpointFields["socket"] = socket }
        let endpoint = String(decoding: (try? JSONSerialization.data(withJSONObject: endpointFields)) ?? Data(), as: UTF8.self)
        try? state.writeAtomically("rpc-endpoint", data: Data(endpoint.utf8), durable: false)
        if settings.secret != nil {
            try? state.writeAtomically("rpc-secret-given", data: Data(secret.utf8), durable: false)
        } else {
            state.remove("rpc-secret-given")
        }
        logger.info("haul daemon listening", metadata: ["host": "\(settings.host)", "port": "\(server.port)",
                                                          "dir": "\(settings.root.path)"])
        return Daemon(port: server.port, secret: secret, server: server, downloads: downloads, ticker: ticker)
    }

    /// Where the daemon using `stateDirectory` listens and its secret, for local clients; `nil`
    /// when no daemon has run there.
    public static func endpoint(stateDirectory: String? = nil) -> (host: String, port: Int, secret: String)? {
        DaemonEndpoint.find(stateDirectory: stateDirectory).map { ($0.host, $0.port, $0.secret) }
    }

    /// Stops serving. Running downloads keep their journals and resume on the next start.
    public func stop() async {
        ticker.cancel()
        await server.shutdown()
    }
}
