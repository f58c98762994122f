import Foundation

/// Turns a request, the version it gets and the merged lies into a `RawResponse`.
struct ResponseBuilder {
    /// The request as the server parsed it.
    struct Request {
        var method: String
        var path: String
        var host: String?
        var range: String?
        var ifRange: String?
        var keepAlive: Bool
    }

    var request: Request
    var version: ScenarioVersion
    var action: ResponseAction
    var servesPath: Bool
    var rangesSupported: Bool
    var bytesPerSecond: Int?
    /// For a redirect rule: which of its targets this answer uses.
    var redirectTurn = 0
    /// `Date` (and `Last-Modified: now`) of this response.
    var date = Date()

    static let boundary = "HAUL-SCENARIO-BOUNDARY"

    func build() -> RawResponse {
        var response = plan()
        response.close = response.close || action.close == true || !request.keepAlive
            || (response.garbage > 0 && action.staysOpen != true) || response.resetAfter != nil
        if response.close, !response.head.contains("\r\nConnection: close\r\n") {
            // "\r\n" is one Character in Swift: drop the blank line by its UTF-8 bytes.
            response.head = String(decoding: response.head.utf8.dropLast(2), as: UTF8.self)
            response.head += "Connection: close\r\n\r\n"
        }
        if request.method == "HEAD" {
            response.pieces = []
            response.chunked = false
        }
        return response
    }

    private func plan() -> RawResponse {
        if let targets = action.redirect, !targets.isEmpty {
            let target = targets[redirectTurn % targets.count]
            var head = commonHead(status: 302)
            head.add("Location", request.host.map { "http://\($0)\(target)" } ?? target)
            head.add("Content-Length", "0")
            return RawResponse(head: head.text)
        }
        if let status = action.status, !(200..<300).contains(status) {
            return textAnswer(status: status, retryAfter: action.retryAfter)
        }
        guard servesPath else { return textAnswer(status: 404, retryAfter: nil) }
        return contentAnswer()
    }

    private func commonHead(status: Int) -> HeadBuilder {
        var head = HeadBuilder(status: status, reason: HeadBuilder.reason(status))
        head.add("Date", Self.httpDate(date))
        head.add("Server", "haul-scenario")
        return head
    }

    private func textAnswer(status: Int, retryAfter: Int?) -> RawResponse {
        let text = Array("error \(status)\n".utf8)
        var head = commonHead(status: status)
        head.add("Content-Type", "text/plain")
        head.add("Content-Length", "\(text.count)")
        if let retryAfter { head.add("Retry-After", "\(retryAfter)") }
        finish(&head)
        return RawResponse(head: head.text, pieces: [.literal(text)])
    }

    /// The range this answer honours, after range support, `ignoreRange` and `If-Range`.
    private func honouredRange() -> RangeRequest {
        guard rangesSupported, action.ignoreRange != true, let header = request.range else { return .none }
        let range = RangeRequest(header: header, size: version.size)
        guard let ifRange = request.ifRange, action.ignoreIfRange != true else { return range }
        // RFC 9110 §13.1.5: a strong ETag compared strongly, or an exact Last-Modified.
        let etag = currentETag
        let strongMatch = etag.map { !$0.hasPrefix("W/") && $0 == ifRange } ?? false
        let dateMatch = currentLastModified.map { $0 == ifRange } ?? false
        return strongMatch || dateMatch ? range : .none
    }

    private var currentETag: String? {
        let etag = action.etag ?? version.etag
        return etag?.isEmpty == true ? nil : etag
    }

    private var currentLastModified: String? {
        guard let value = action.lastModified ?? version.lastModified, !value.isEmpty else { return nil }
        return value == "now" ? Self.httpDate(date) : value
    }

    private func contentAnswer() -> RawResponse {
        let content = version.content
        let size = version.size
        let honoursRanges = rangesSupported && action.ignoreRange != true
        var response: RawResponse
        switch honouredRange() {
        case .none:
            var head = commonHead(status: 200)
            response = RawResponse(head: "", pieces: [.content(content, 0..<size)])
            describeBody(&head, response: &response, honoursRanges: honoursRanges)
            response.head = head.text
        case .unsatisfiable:
            var head = commonHead(status: 416)
            head.add("Content-Range", "bytes */\(size)")
            head.add("Content-Length", "0")
            finish(&head)
            response = RawResponse(head: head.text)
        case .satisfiable(let asked):
            var head = commonHead(status: 206)
            response = RawResponse(head: "")
            let sent = shiftedBody(asked: asked, size: size)
            let shift = action.contentRangeShift ?? 0
            let named = "bytes \(asked.lowerBound + shift)-\(min(asked.upperBound - 1 + shift, size - 1))/\(size)"
            if action.multipart == true {
                let open = "--\(Self.boundary)\r\nContent-Type: application/octet-stream\r\nContent-Range: \(named)\r\n\r\n"
                response.pieces = [.literal(Array(open.utf8)), .content(content, sent),
                                   .literal(Array("\r\n--\(Self.boundary)--\r\n".utf8))]
            } else {
                response.pieces = [.content(content, sent)]
                if action.noContentRange != true { head.add("Content-Range", named) }
            }
            describeBody(&head, response: &response, honoursRanges: honoursRanges)
            response.head = head.text
        }
        response.resetAfter = action.resetAfter
        response.stallAfter = action.stallAfter
        response.stallSeconds = min(60, max(0, action.stallSeconds ?? 60))
        response.bytesPerSecond = action.bytesPerSecond ?? bytesPerSecond
        response.garbage = action.garbageAfterBody ?? 0
        return response
    }

    /// The bytes a `206` for `asked` carries, after `shiftBody`.
    private func shiftedBody(asked: Range<Int64>, size: Int64) -> Range<Int64> {
        guard let shift = action.shiftBody, shift > 0 else { return asked }
        if action.shortLength == true {
            return min(asked.lowerBound + shift, asked.upperBound)..<asked.upperBound
        }
        let start = min(asked.lowerBound + shift, size - asked.count64)
        return start..<(start + asked.count64)
    }

    /// Content headers, validators, length or chunked framing, then the final edits.
    private func describeBody(_ head: inout HeadBuilder, response: inout RawResponse, honoursRanges: Bool) {
        if action.multipart == true {
            head.add("Content-Type", "multipart/byteranges; boundary=\(Self.boundary)")
        } else {
            head.add("Content-Type", "application/octet-stream")
        }
        if honoursRanges { head.add("Accept-Ranges", "bytes") }
        if let etag = currentETag { head.add("ETag", etag) }
        if let lastModified = currentLastModified { head.add("Last-Modified", lastModified) }
        if let declared = action.chunkedWithContentLength {
            head.add("Transfer-Encoding", "chunked")
            head.add("Content-Length", "\(declared)")
            response.chunked = true
        } else if action.chunked == true {
            head.add("Transfer-Encoding", "chunked")
            response.chunked = true
        } else {
            head.add("Content-Length", "\(response.bodyCount)")
        }
        finish(&head)
    }

    /// Dropped fields, extra fields (after the drop, so dropping and adding a name replaces
    /// it) and the status line override.
    private func finish(_ head: inout HeadBuilder) {
        for name in action.omitHeaders ?? [] { head.remove(name) }
        for (name, value) in (action.headers ?? [:]).sorted(by: { $0.key < $1.key }) { head.add(name, value) }
        if let line = action.statusLine { head.statusLine = line }
    }

    /// An IMF-fixdate (RFC 9110 §5.6.7).
    static func httpDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }
}
