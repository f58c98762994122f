/// A rule: when a request matches `when`, the answer takes the fields set in `then`.
public struct ScenarioRule: Decodable, Sendable {
    /// Which requests the rule applies to (an empty selector: all).
    public var when: RequestSelector?
    /// How the answer lies.
    public var then: ResponseAction
}

/// Selects requests. Every field that is set must hold; none set selects every request.
public struct RequestSelector: Decodable, Sendable, Equatable {
    /// Exactly this request index.
    public var index: Int?
    /// Any of these request indices.
    public var indices: [Int]?
    /// Request indices at or after this one.
    public var fromIndex: Int?
    /// Request indices before this one.
    public var beforeIndex: Int?
    /// `[m, r]`: request indices with `index % m == r`.
    public var indexModulo: [Int]?
    /// `[m, r]`: connections with `connection % m == r`.
    public var connectionModulo: [Int]?
    /// Only this path.
    public var path: String?
    /// true: requests with a satisfiable `Range`; false: requests without one.
    public var ranged: Bool?
    /// The `Range` header is exactly this text (e.g. `bytes=0-`).
    public var range: String?
    /// Ranged requests whose first byte is greater than this.
    public var startAbove: Int64?
    /// Ranged requests whose first byte is in the last this-many bytes of the version served.
    public var startInLast: Int64?
    /// Only the first this-many requests that match the rest of the selector.
    public var times: Int?
    /// Requests whose `Authorization` header is not exactly this (or is absent): a server that
    /// wants these credentials.
    public var authorizationIsNot: String?

    /// Whether a request matches (ignoring `times`, which the server counts).
    func matches(index: Int, connection: Int, path: String, rangeHeader: String?, start: Int64?, size: Int64,
                 authorization: String? = nil) -> Bool {
        if let wanted = authorizationIsNot, authorization == wanted { return false }
        if let wanted = self.index, wanted != index { return false }
        if let indices, !indices.contains(index) { return false }
        if let fromIndex, index < fromIndex { return false }
        if let beforeIndex, index >= beforeIndex { return false }
        if let modulo = indexModulo, modulo.count == 2, modulo[0] > 0, index % modulo[0] != modulo[1] { return false }
        if let modulo = connectionModulo, modulo.count == 2, modulo[0] > 0, connection % modulo[0] != modulo[1] {
            return false
        }
        if let wanted = self.path, wanted != path { return false }
        if let ranged, ranged != (start != nil) { return false }
        if let range, range != rangeHeader { return false }
        if let startAbove {
            guard let start, start > startAbove else { return false }
        }
        if let startInLast {
            guard let start, start >= size - startInLast else { return false }
        }
        return true
    }
}

/// How an answer lies. Unset fields keep the honest behaviour.
public struct ResponseAction: Decodable, Sendable, Equatable {
    /// Serve this version instead of the scheduled one.
    public var version: Int?
    /// Answer with this status and a short text body (e.g. 404, 503, 429).
    public var status: Int?
    /// With `status`: a `Retry-After` of this many seconds.
    public var retryAfter: Int?
    /// Answer `302` with a `Location` to these paths in turn (round-robin per rule).
    public var redirect: [String]?
    /// Ignore `Range` and `If-Range`: `200` with the whole body.
    public var ignoreRange: Bool?
    /// Ignore `If-Range`: honour the range whatever the validator says.
    public var ignoreIfRange: Bool?
    /// Replace the status line verbatim (e.g. `HTTP/1.1 200OK`).
    public var statusLine: String?
    /// A `206` body starts this many bytes after the first byte `Content-Range` names.
    public var shiftBody: Int64?
    /// With `shiftBody`: the body (and `Content-Length`) is `shiftBody` bytes short of the range's
    /// span. Without it the headers agree and the body is the span's length, clamped at the end.
    public var shortLength: Bool?
    /// `Content-Range` names a range this many bytes later than the one sent (the body is right).
    public var contentRangeShift: Int64?
    /// A `206` without `Content-Range`.
    public var noContentRange: Bool?
    /// A `206` as `multipart/byteranges` with one part.
    public var multipart: Bool?
    /// Chunked framing and no `Content-Length`.
    public var chunked: Bool?
    /// Chunked framing and also a `Content-Length` of this value.
    public var chunkedWithContentLength: Int?
    /// After the complete response, this many junk bytes, then close.
    public var garbageAfterBody: Int?
    /// With `garbageAfterBody`: after the junk, stay silent with the connection open instead of
    /// closing it (a response without `Content-Length` then never ends on its own).
    public var staysOpen: Bool?
    /// Close the connection after this many body bytes.
    public var resetAfter: Int?
    /// Go silent after this many body bytes, keeping the connection open.
    public var stallAfter: Int?
    /// How long a stalled connection stays open (at most 60, the default).
    public var stallSeconds: Int?
    /// Throttle this body to this many bytes per second (1 or 2 for a trickle).
    public var bytesPerSecond: Int?
    /// Send this `ETag` instead of the version's; `""` sends none.
    public var etag: String?
    /// Send this `Last-Modified` instead of the version's (`"now"`: the `Date`); `""` sends none.
    public var lastModified: String?
    /// Drop these header fields (case-insensitive), e.g. `["ETag"]`.
    public var omitHeaders: [String]?
    /// Add these header fields, after `omitHeaders`: dropping and adding a name replaces it
    /// (e.g. a `Content-Length` that lies about the body sent).
    public var headers: [String: String]?
    /// Close the connection after the response.
    public var close: Bool?

    /// No lie at all.
    public init() {}

    /// This action with every field `other` sets taken from `other`.
    func merged(with other: ResponseAction) -> ResponseAction {
        var out = self
        out.version = other.version ?? version
        out.status = other.status ?? status
        out.retryAfter = other.retryAfter ?? retryAfter
        out.redirect = other.redirect ?? redirect
        out.ignoreRange = other.ignoreRange ?? ignoreRange
        out.ignoreIfRange = other.ignoreIfRange ?? ignoreIfRange
        out.statusLine = other.statusLine ?? statusLine
        out.shiftBody = other.shiftBody ?? shiftBody
        out.shortLength = other.shortLength ?? shortLength
        out.contentRangeShift = other.contentRangeShift ?? contentRangeShift
        out.noContentRange = other.noContentRange ?? noContentRange
        out.multipart = other.multipart ?? multipart
        out.chunked = other.chunked ?? chunked
        out.chunkedWithContentLength = other.chunkedWithContentLength ?? chunkedWithContentLength
        out.garbageAfterBody = other.garbageAfterBody ?? garbageAfterBody
        out.staysOpen = other.staysOpen ?? staysOpen
        out.resetAfter = other.resetAfter ?? resetAfter
        out.stallAfter = other.stallAfter ?? stallAfter
        out.stallSeconds = other.stallSeconds ?? stallSeconds
        out.bytesPerSecond = other.bytesPerSecond ?? bytesPerSecond
        out.etag = other.etag ?? etag
        out.lastModified = other.lastModified ?? lastModified
        out.omitHeaders = (omitHeaders ?? []) + (other.omitHeaders ?? [])
        out.headers = (headers ?? [:]).merging(other.headers ?? [:]) { $1 }
        out.close = other.close ?? close
        return out
    }
}
