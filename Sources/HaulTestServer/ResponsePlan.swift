import NIOHTTP1

/// What the server will send for one request: status, headers, which bytes, and how.
struct ResponsePlan {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var content: GeneratedContent?
    var body: Range<Int64>
    var textBody: String?
    var bytesPerSecond: Int?
    var firstByteDelay: Duration?
    var resetAfter: Int?
    var stallAfter: Int?
    var corruptFirstByte = false
    var isHead = false
    /// The index of the request in the server's log (for counting bytes sent).
    var requestIndex: Int?

    /// A small text document (a metalink, say), sent whole whatever the request's `Range`.
    static func document(_ text: String, contentType: String) -> ResponsePlan {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(text.utf8.count)")
        return ResponsePlan(status: .ok, headers: headers, content: nil, body: 0..<0, textBody: text)
    }

    static func error(_ status: HTTPResponseStatus, retryAfter: Int?) -> ResponsePlan {
        var headers = HTTPHeaders()
        let body = "error \(status.code)\n"
        headers.add(name: "Content-Type", value: "text/plain")
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        if let retryAfter { headers.add(name: "Retry-After", value: "\(retryAfter)") }
        return ResponsePlan(status: status, headers: headers, content: nil, body: 0..<0, textBody: body)
    }

    init(status: HTTPResponseStatus, headers: HTTPHeaders, content: GeneratedContent?, body: Range<Int64>,
         textBody: String?) {
        self.status = status
        self.headers = headers
        self.content = content
        self.body = body
        self.textBody = textBody
    }

    init(file: ServedFile, requested: RangeRequest, ifRange: String?, fault: Fault.Kind?,
         connection: Int, isHead: Bool) {
        let size = file.content.size
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/octet-stream")
        if let etag = file.etag { headers.add(name: "ETag", value: etag) }
        if let lastModified = file.lastModified { headers.add(name: "Last-Modified", value: lastModified) }
        if file.supportsRanges { headers.add(name: "Accept-Ranges", value: "bytes") }
        for (name, value) in file.extraHeaders { headers.add(name: name, value: value) }

        var range = requested
        if !file.supportsRanges { range = .none }
        if let ifRange, ifRange != file.etag, ifRange != file.lastModified { range = .none }

        var status = HTTPResponseStatus.ok
        var body: Range<Int64> = 0..<size
        switch range {
        case .none:
            break
        case .satisfiable(let asked):
            status = .partialContent
            body = asked
            let shift: Int64 = fault == .wrongContentRange ? 1 : 0
            let last = min(asked.upperBound - 1 + shift, size - 1)
            headers.add(name: "Content-Range", value: "bytes \(asked.lowerBound + shift)-\(last)/\(size)")
        case .unsatisfiable:
            status = .rangeNotSatisfiable
            body = 0..<0
            headers.add(name: "Content-Range", value: "bytes */\(size)")
        }
        if file.sendsLength || status == .rangeNotSatisfiable {
            headers.add(name: "Content-Length", value: "\(body.count)")
        }
        self.init(status: status, headers: headers, content: file.content, body: body, textBody: nil)
        if let odd = file.oddConnectionBytesPerSecond, connection % 2 == 1 {
            bytesPerSecond = odd
        } else {
            bytesPerSecond = file.bytesPerSecond
        }
        firstByteDelay = file.firstByteDelay
        self.isHead = isHead
        switch fault {
        case .resetAfter(let bytes): resetAfter = bytes
        case .stallAfter(let bytes): stallAfter = bytes
        case .corruptBody: corruptFirstByte = true
        default: break
        }
    }
}
