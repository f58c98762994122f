import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging

/// Downloads files over HTTP(S), each split into byte ranges fetched over several connections.
///
/// Shaped like `URLSession`: one session holds one libcurl multi handle and one serial queue;
/// many downloads share them, so threads do not grow with connections.
public final class DownloadSession: Sendable {
    /// The session's settings (copied at creation).
    public let configuration: Configuration
    let multi: CurlMulti
    let logger: Logger
    /// The file syscalls downloads use; tests substitute failures (ENOSPC, short writes).
    let syscalls: Syscalls

    /// A session with default settings.
    public static let shared = DownloadSession(configuration: .default)

    /// Creates a session.
    public convenience init(configuration: Configuration = .default) {
        self.init(configuration: configuration, syscalls: .system)
    }

    init(configuration: Configuration, syscalls: Syscalls) {
        self.syscalls = syscalls
        self.configuration = configuration
        self.logger = Logger(label: "haul")
        self.multi = CurlMulti(label: "haul.session", maxHostConnections: configuration.connectionsPerHost,
                               logger: logger)
    }

    /// Downloads `url` and returns where the file is and the server's response.
    ///
    /// - Parameters:
    ///   - url: an `http` or `https` URL.
    ///   - destination: where to put the file (replaced if it exists). When `nil`, the file is left
    ///     in the temporary directory and the caller owns it.
    /// - Throws: `HaulError` for what the engine detects. Cancelling the Swift task cancels the
    ///   download and throws `HaulError.cancelled`.
    public func download(from url: URL, to destination: URL? = nil) async throws -> (URL, HTTPURLResponse) {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw HaulError.invalidURL(url.absoluteString)
        }
        let directory = destination?.deletingLastPathComponent().path
            ?? (configuration.temporaryDirectory ?? FileManager.default.temporaryDirectory).path
        let name = destination?.lastPathComponent ?? "download"
        let tempPath = directory + "/.\(name).haul-\(UInt64.random(in: 0...UInt64.max) & 0xffff_ffff_ffff)"
        let operation = DownloadOperation(
            multi: multi, settings: settings(for: url), tempPath: tempPath,
            destinationPath: destination?.path, logger: logger, syscalls: syscalls,
            completion: { _ in })
        let result = try await run(operation)
        let location = URL(fileURLWithPath: result.path)
        let responseURL = result.effectiveURL.flatMap(URL.init(string:)) ?? url
        var fields: [String: String] = [:]
        for field in result.head?.fields ?? [] { fields[field.name] = field.value }
        let response = HTTPURLResponse(url: responseURL, statusCode: result.head?.status ?? 200,
                                       httpVersion: "HTTP/1.1", headerFields: fields)!
        return (location, response)
    }

    private func run(_ operation: DownloadOperation) async throws -> DownloadResult {
        let box = ContinuationBox()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                box.set(continuation)
                operation.setCompletion { result in box.resume(result) }
                operation.start()
            }
        } onCancel: {
            operation.cancel()
        }
    }

    func settings(for url: URL) -> DownloadOperation.Settings {
        var request = RequestOptions(url: url.absoluteString)
        request.headers = configuration.httpAdditionalHeaders.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        request.userAgent = configuration.userAgent
        request.connectTimeoutMilliseconds = Int(configuration.timeoutIntervalForConnect * 1000)
        request.stallTimeoutSeconds = max(1, Int(configuration.timeoutIntervalForRequest.rounded(.up)))
        request.bufferSize = configuration.receiveBufferSize
        request.caFile = configuration.caCertificateFile
        request.verifyTLS = configuration.verifiesTLSCertificates
        request.proxy = configuration.proxy
        var settings = DownloadOperation.Settings(
            request: request,
            engine: .init(connections: configuration.connectionsPerDownload,
                          minimumSplit: configuration.minimumSplitSize,
                          maxRetries: configuration.retryLimit))
        settings.syncOnFinish = configuration.syncsBeforeMove
        return settings
    }
}

/// Bridges the operation's completion callback to one checked continuation.
private final class ContinuationBox: @unchecked Sendable {
    // Unchecked: `lock` guards `continuation`.
    private let lock = NSLock()
    private var continuation: CheckedContinuation<DownloadResult, any Error>?

    func set(_ continuation: CheckedContinuation<DownloadResult, any Error>) {
        lock.withLock { self.continuation = continuation }
    }

    func resume(_ result: Result<DownloadResult, HaulError>) {
        let continuation = lock.withLock { () -> CheckedContinuation<DownloadResult, any Error>? in
            defer { self.continuation = nil }
            return self.continuation
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }
}
