/// One answer of a `ScenarioServer`, ready to be written as raw bytes: the head exactly as it
/// goes on the wire, the body as pieces, and how the connection misbehaves while sending it.
struct RawResponse {
    /// A part of the body.
    enum Piece {
        /// Bytes written as they are (error text, multipart framing).
        case literal([UInt8])
        /// Bytes of generated content, streamed in chunks.
        case content(GeneratedContent, Range<Int64>)

        var count: Int64 {
            switch self {
            case .literal(let bytes): Int64(bytes.count)
            case .content(_, let range): range.count64
            }
        }
    }

    /// Status line and header fields, each ending in CRLF, and the blank line.
    var head: String
    var pieces: [Piece] = []
    /// Frame the body with chunked transfer coding.
    var chunked = false
    /// Junk bytes written after the complete response (then the connection closes).
    var garbage = 0
    /// Close the connection after the response.
    var close = false
    /// Close the connection after this many body bytes.
    var resetAfter: Int?
    /// Go silent after this many body bytes.
    var stallAfter: Int?
    /// How long a stall keeps the connection open, seconds.
    var stallSeconds = 60
    /// Throttle, bytes per second.
    var bytesPerSecond: Int?

    /// The body's length without framing.
    var bodyCount: Int64 { pieces.reduce(0) { $0 + $1.count } }
}

extension Range where Bound == Int64 {
    var count64: Int64 { upperBound - lowerBound }
}

/// Builds the head text of a response.
struct HeadBuilder {
    var statusLine: String
    private(set) var fields: [(String, String)] = []

    init(status: Int, reason: String) {
        statusLine = "HTTP/1.1 \(status) \(reason)"
    }

    mutating func add(_ name: String, _ value: String) {
        fields.append((name, value))
    }

    mutating func remove(_ name: String) {
        fields.removeAll { $0.0.lowercased() == name.lowercased() }
    }

    func has(_ name: String) -> Bool {
        fields.contains { $0.0.lowercased() == name.lowercased() }
    }

    /// The head as it goes on the wire.
    var text: String {
        var out = statusLine + "\r\n"
        for (name, value) in fields { out += "\(name): \(value)\r\n" }
        return out + "\r\n"
    }

    /// The reason phrase for the statuses the server sends.
    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 206: "Partial Content"
        case 302: "Found"
        case 404: "Not Found"
        case 416: "Range Not Satisfiable"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}
