/// A file the test server serves, and how it misbehaves.
public struct ServedFile: Sendable {
    public var content: GeneratedContent
    public var etag: String?
    public var lastModified: String?
    /// When false the server ignores `Range` and always answers `200` with the whole file.
    public var supportsRanges: Bool
    /// When false the response has no `Content-Length` (chunked encoding).
    public var sendsLength: Bool
    /// Bytes per second per connection; `nil` for unthrottled.
    public var bytesPerSecond: Int?
    /// Rate for the connections whose per-server sequence number is odd, to model mixed-speed
    /// paths; `nil` uses `bytesPerSecond` for all.
    public var oddConnectionBytesPerSecond: Int?
    /// Wait before the first body byte of every response.
    public var firstByteDelay: Duration?
    /// Misbehaviour for the next responses, applied in order.
    public var faults: [Fault]
    /// Extra response header fields, e.g. `Repr-Digest` or `Digest`.
    public var extraHeaders: [(String, String)] = []

    public init(content: GeneratedContent, etag: String? = nil, lastModified: String? = nil,
                supportsRanges: Bool = true, sendsLength: Bool = true, bytesPerSecond: Int? = nil,
                oddConnectionBytesPerSecond: Int? = nil, firstByteDelay: Duration? = nil,
                faults: [Fault] = []) {
        self.content = content
        self.etag = etag
        self.lastModified = lastModified
        self.supportsRanges = supportsRanges
        self.sendsLength = sendsLength
        self.bytesPerSecond = bytesPerSecond
        self.oddConnectionBytesPerSecond = oddConnectionBytesPerSecond
        self.firstByteDelay = firstByteDelay
        self.faults = faults
    }
}

/// One scripted fault. Each applies to `times` responses (counted per file), then stops.
public struct Fault: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Close the connection after sending this many body bytes.
        case resetAfter(bytes: Int)
        /// Stop sending after this many body bytes but keep the connection open.
        case stallAfter(bytes: Int)
        /// Answer `206` with a `Content-Range` that starts one byte later than asked.
        case wrongContentRange
        /// Answer with this status and an error body, optionally with `Retry-After`.
        case status(Int, retryAfter: Int?)
        /// Send the right headers but flip every bit of the body's first byte.
        case corruptBody
    }

    public var kind: Kind
    public var times: Int
    /// Only responses to requests whose range starts at or after this byte are affected
    /// (0: all). Lets a test hit a later segment rather than the probe.
    public var minimumOffset: Int64

    public init(_ kind: Kind, times: Int = 1, minimumOffset: Int64 = 0) {
        self.kind = kind
        self.times = times
        self.minimumOffset = minimumOffset
    }
}

/// What the server saw of one request.
public struct RecordedRequest: Sendable, Equatable {
    public var method: String
    public var path: String
    public var range: String?
    public var ifRange: String?
    /// The server's sequence number of the connection the request came on.
    public var connection: Int
    /// Every header, names lowercased (the last value wins for repeated names).
    public var headers: [String: String]
    /// The request target as sent: the path with its query.
    public var target: String = ""
}
