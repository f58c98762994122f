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
    /// `Content-Type: multipart/byteranges`: several parts, which a segment cannot place.
    var isMultipart = false
    /// Why the body's length cannot be known from this head (Content-Length fields that
    /// disagree or are not numbers, RFC 9112 §6.3), or `nil`. Such an answer is never used.
    var framingProblem: String?

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
        var lengths: [Substring] = []
        for (name, value) in fields {
            switch name.lowercased() {
            case "content-length": lengths += value.split(separator: ",", omittingEmptySubsequences: false).map(\.trimmingSpaces)
            case "content-range": contentRange = ContentRange(value)
            case "etag": etag = String(value.trimmingSpaces)
            case "last-modified": lastModified = String(value.trimmingSpaces)
            case "retry-after": retryAfterSeconds = Int(value.trimmingSpaces)
            case "content-type": isMultipart = value.lowercased().hasPrefix("multipart/")
            default: break
            }
        }
        // RFC 9112 §6.3: with Transfer-Encoding, Content-Length is ignored (chunked framing wins).
        guard !fields.contains(where: { $0.name.lowercased() == "transfer-encoding" }) else { return }
        // One length, however often repeated (RFC 9110 §8.6); anything else frames nothing.
        let values = Set(lengths.map { Int64(decimal: $0) })
        if values.count > 1 || values.contains(nil) {
            let shown = lengths.map { "'\($0.prefix(40))'" }.joined(separator: ", ")
            framingProblem = "the server's answer has Content-Length \(shown), so where its body ends is unknown"
        } else {
            contentLength = values.first ?? nil
        }
    }

    /// The fields as one dictionary, for `HTTPURLResponse`: a name sent more than once (in any
    /// case) keeps its first spelling and its values joined with ", ", as Foundation joins them.
    var headerFields: [String: String] {
        var joined: [String: String] = [:]
        var spelling: [String: String] = [:]
        for (name, value) in fields {
            let key = spelling[name.lowercased(), default: name]
            spelling[name.lowercased()] = key
            joined[key] = joined[key].map { "\($0), \(value)" } ?? value
        }
        return joined
    }

    /// The field `name` (any case) as `headerFields` has it: the values of a field sent more
    /// than once joined with ", "; `nil` when the server did not send it.
    func value(of name: String) -> String? {
        let wanted = name.lowercased()
        let values = fields.lazy.filter { $0.name.lowercased() == wanted }.map(\.value)
        return values.isEmpty ? nil : values.joined(separator: ", ")
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
    /// Whether the first `401` with a challenge is skipped because curl answers it (Digest).
    var skipsAuthChallenge = false

    /// Feeds one header line (with or without CRLF). Returns the head when a final block ends.
    /// `status` is curl's own reading of the status line (`CURLINFO_RESPONSE_CODE`), which wins.
    mutating func feed(_ line: Substring, status curlStatus: Int? = nil) -> ResponseHead? {
        if line.hasPrefix("HTTP/") {
            // The status is the three digits after the version, however the reason phrase is
            // glued on (`HTTP/1.1 200OK` is accepted by curl, so it must be here too).
            let afterVersion = line.drop { $0 != " " }.drop { $0 == " " }
            status = Int(afterVersion.prefix { $0.isASCII && $0.isNumber }.prefix(3)) ?? 0
            fields = []
            return nil
        }
        let content = line.trimmingSpaces
        if content.isEmpty {
            guard let parsed = status else { return nil }
            let code = curlStatus.flatMap { $0 > 0 ? $0 : nil } ?? parsed
            status = nil
            if code < 200 { return nil }
            if followsRedirects, (300..<400).contains(code),
               fields.contains(where: { $0.name.lowercased() == "location" }) {
                return nil
            }
            if skipsAuthChallenge, code == 401, fields.contains(where: { $0.name.lowercased() == "www-authenticate" }) {
                skipsAuthChallenge = false
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
