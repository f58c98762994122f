/// The parts of a final (non-1xx, non-redirect) HTTP response head the engine decides on.
///
/// Built by the transfer layer from curl's header callback; a plain value so the state machines
/// can be tested with tables.
struct ResponseHead: Equatable, Sendable {
    var status: Int
    var contentLength: Int64?
    var contentRange: ContentRange?
    var etag: String?
    var lastModified: String?
    /// `Retry-After` in seconds (only the delta-seconds form; an HTTP date is ignored).
    var retryAfterSeconds: Int?
    /// All header fields of the final response, in order, names as sent.
    var fields: [(name: String, value: String)]

    init(status: Int, contentLength: Int64? = nil, contentRange: ContentRange? = nil,
         etag: String? = nil, lastModified: String? = nil, retryAfterSeconds: Int? = nil,
         fields: [(name: String, value: String)] = []) {
        self.status = status
        self.contentLength = contentLength
        self.contentRange = contentRange
        self.etag = etag
        self.lastModified = lastModified
        self.retryAfterSeconds = retryAfterSeconds
        self.fields = fields
    }

    /// Builds a head from a status code and raw header fields.
    init(status: Int, fields: [(name: String, value: String)]) {
        self.init(status: status, contentLength: nil, fields: fields)
        for (name, value) in fields {
            switch name.lowercased() {
            case "content-length": contentLength = Int64(decimal: value.trimmingSpaces)
            case "content-range": contentRange = ContentRange(value)
            case "etag": etag = String(value.trimmingSpaces)
            case "last-modified": lastModified = String(value.trimmingSpaces)
            case "retry-after": retryAfterSeconds = Int(value.trimmingSpaces)
            default: break
            }
        }
    }

    /// A strong ETag (not `W/`), usable with `If-Range`.
    var strongETag: String? {
        guard let etag, !etag.hasPrefix("W/") else { return nil }
        return etag
    }

    static func == (lhs: ResponseHead, rhs: ResponseHead) -> Bool {
        lhs.status == rhs.status && lhs.contentLength == rhs.contentLength
            && lhs.contentRange == rhs.contentRange && lhs.etag == rhs.etag
            && lhs.lastModified == rhs.lastModified && lhs.retryAfterSeconds == rhs.retryAfterSeconds
            && lhs.fields.map { "\($0.name):\($0.value)" } == rhs.fields.map { "\($0.name):\($0.value)" }
    }
}

/// Incremental parser for the header lines curl hands to `CURLOPT_HEADERFUNCTION`.
///
/// curl delivers every header block it sees: 1xx interim responses, each redirect, then the
/// final response. `feed` returns a head only for a block that ends and is final.
struct ResponseHeadParser: Sendable {
    private var status: Int?
    private var fields: [(name: String, value: String)] = []

    /// Whether 3xx blocks are skipped because curl follows them.
    var followsRedirects = true

    /// Feeds one header line (with or without CRLF). Returns the head when a final block ends.
    mutating func feed(_ line: Substring) -> ResponseHead? {
        if line.hasPrefix("HTTP/") {
            let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
            status = parts.count >= 2 ? Int(parts[1]) : nil
            fields = []
            return nil
        }
        let content = line.trimmingSpaces
        if content.isEmpty {
            guard let code = status else { return nil }
            status = nil
            if code < 200 { return nil }
            if followsRedirects, (300..<400).contains(code),
               fields.contains(where: { $0.name.lowercased() == "location" }) {
                return nil
            }
            return ResponseHead(status: code, fields: fields)
        }
        if let colon = content.firstIndex(of: ":") {
            let name = String(content[..<colon].trimmingSpaces)
            let value = String(content[content.index(after: colon)...].trimmingSpaces)
            fields.append((name, value))
        }
        return nil
    }
}
