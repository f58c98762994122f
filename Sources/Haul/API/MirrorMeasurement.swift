import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What `DownloadSession.measure(_:connections:duration:bytes:)` found out about one URL.
public struct MirrorMeasurement: Sendable, Equatable {
    /// The URL measured.
    public var url: URL
    /// Seconds from the request to the first byte of the body (connection included), or `nil`
    /// when no body arrived.
    public var timeToFirstByte: Double?
    /// Bytes per second over one connection.
    public var singleConnectionBytesPerSecond: Double
    /// Bytes per second over `connections` connections at once.
    public var multiConnectionBytesPerSecond: Double
    /// The connections used for `multiConnectionBytesPerSecond`.
    public var connections: Int
    /// Whether the server answered a range request with `206`.
    public var supportsRanges: Bool
    /// The file's length, when the server said.
    public var length: Int64?
    /// The server's ETag, if it sent one.
    public var etag: String?
    /// The server's Last-Modified, if it sent one.
    public var lastModified: String?
    /// Why the URL could not be measured, if it could not.
    public var error: String?
}

extension DownloadSession {
    /// Measures how fast `url` serves: time to first byte, throughput over one connection and
    /// over `connections` at once, range support, length and validators. Bounded by `duration`
    /// seconds and `bytes` per phase; the bytes are counted and dropped, never written to disk.
    public func measure(_ url: URL, connections: Int = 8, duration: TimeInterval = 3,
                        bytes: Int64 = 64 << 20) async -> MirrorMeasurement {
        var options = (try? settings(for: URLRequest(url: url)).request) ?? RequestOptions(url: url.absoluteString)
        options.stallTimeoutSeconds = max(1, Int(duration.rounded(.up)) + 1)
        let probe = ThroughputProbe(multi: multi, options: options)
        let limit = Duration.milliseconds(Int(duration * 1000))
        let head = await probe.run(connections: 1, bytesEach: 1, limit: limit)
        var result = MirrorMeasurement(url: url, timeToFirstByte: head.firstByte?.secondsValue,
                                       singleConnectionBytesPerSecond: 0, multiConnectionBytesPerSecond: 0,
                                       connections: max(1, connections), supportsRanges: head.head?.status == 206,
                                       length: head.head?.contentRange?.completeLength ?? head.head?.contentLength,
                                       etag: head.head?.etag, lastModified: head.head?.lastModified, error: head.error)
        guard result.error == nil else { return result }
        let total = min(bytes, result.length ?? bytes)
        let single = await probe.run(connections: 1, bytesEach: total, limit: limit)
        result.singleConnectionBytesPerSecond = single.bytesPerSecond
        if result.supportsRanges {
            let many = await probe.run(connections: result.connections,
                                       bytesEach: Swift.max(Int64(1), total / Int64(result.connections)),
                                       limit: limit)
            result.multiConnectionBytesPerSecond = many.bytesPerSecond
        } else {
            result.multiConnectionBytesPerSecond = result.singleConnectionBytesPerSecond
        }
        result.error = single.error
        return result
    }
}
