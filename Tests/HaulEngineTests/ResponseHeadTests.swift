@testable import Haul
import Testing

@Suite("Content-Range and response heads")
struct ResponseHeadTests {
    @Test("Content-Range parsing", arguments: [
        ("bytes 0-99/100", ContentRange(first: 0, last: 99, completeLength: 100)),
        ("bytes 10-19/*", ContentRange(first: 10, last: 19, completeLength: nil)),
        ("bytes */0", ContentRange(first: nil, last: nil, completeLength: 0)),
        ("  bytes 5-5/6 ", ContentRange(first: 5, last: 5, completeLength: 6)),
        ("Bytes 0-0/1", ContentRange(first: 0, last: 0, completeLength: 1)),
    ] as [(String, ContentRange)])
    func parses(header: String, expected: ContentRange) {
        #expect(ContentRange(header) == expected)
    }

    @Test("Malformed Content-Range is rejected", arguments: [
        "bytes 0-99", "bytes 9-1/100", "bytes 0-100/100", "items 0-1/2", "bytes */*", "bytes -1-5/10",
        "bytes 0-+5/10", "", "bytes 0-99/1x",
    ])
    func rejects(header: String) {
        #expect(ContentRange(header) == nil)
    }

    @Test("Header lines fold into the final head; redirects and 1xx are skipped")
    func parserSkipsInterimBlocks() {
        var parser = ResponseHeadParser()
        let lines = [
            "HTTP/1.1 100 Continue\r\n", "\r\n",
            "HTTP/1.1 302 Found\r\n", "Location: /elsewhere\r\n", "\r\n",
            "HTTP/1.1 206 Partial Content\r\n", "Content-Range: bytes 0-9/10\r\n", "ETag: \"abc\"\r\n",
            "Content-Length: 10\r\n", "Retry-After: 3\r\n", "\r\n",
        ]
        var heads: [ResponseHead] = []
        for line in lines { if let head = parser.feed(Substring(line)) { heads.append(head) } }
        #expect(heads.count == 1)
        #expect(heads.first?.status == 206)
        #expect(heads.first?.contentRange == ContentRange(first: 0, last: 9, completeLength: 10))
        #expect(heads.first?.contentLength == 10)
        #expect(heads.first?.strongETag == "\"abc\"")
        #expect(heads.first?.retryAfterSeconds == 3)
    }

    @Test("One field is read as the header dictionary has it: any case, repeats joined, absent is nil")
    func oneField() {
        let head = ResponseHead(status: 200, fields: [("Content-Disposition", "attachment; filename=a.bin"),
                                                      ("X-Seen", "1"), ("x-seen", "2"), ("Content-Length", "5")])
        #expect(head.value(of: "content-disposition") == "attachment; filename=a.bin")
        #expect(head.value(of: "X-SEEN") == "1, 2")
        #expect(head.value(of: "ETag") == nil)
        for name in ["Content-Disposition", "X-Seen", "Content-Length"] {
            #expect(head.value(of: name) == head.headerFields[name])
        }
    }

    @Test("A weak ETag is not a validator for If-Range")
    func weakETag() {
        let head = ResponseHead(status: 200, fields: [("ETag", "W/\"x\""), ("Last-Modified", "Tue, 1 Jan 2030")])
        #expect(head.strongETag == nil)
        #expect(head.lastModified == "Tue, 1 Jan 2030")
    }
}

@Suite("Backoff")
struct BackoffTests {
    @Test("Exponential with equal jitter, capped", arguments: [
        (1, 0.0, Duration.milliseconds(125)), (1, 1.0, .milliseconds(250)), (2, 0.0, .milliseconds(250)),
        (3, 1.0, .milliseconds(1000)), (10, 1.0, .seconds(8)), (10, 0.0, .seconds(4)), (100, 0.5, .seconds(6)),
    ] as [(Int, Double, Duration)])
    func delay(attempt: Int, jitter: Double, expected: Duration) {
        #expect(Backoff.delay(attempt: attempt, base: .milliseconds(250), cap: .seconds(8), jitter: jitter) == expected)
    }

    @Test("Retry-After is a floor, bounded by four times the cap")
    func retryAfter() {
        #expect(Backoff.delay(attempt: 1, base: .milliseconds(250), cap: .seconds(8), jitter: 0, retryAfter: 3) == .seconds(3))
        #expect(Backoff.delay(attempt: 1, base: .milliseconds(250), cap: .seconds(8), jitter: 0, retryAfter: 3600) == .seconds(32))
    }
}

@Suite("Content-Length framing")
struct ContentLengthFramingTests {
    @Test("One length, however often it is repeated; disagreeing or malformed lengths frame nothing", arguments: [
        (["10"], Int64(10), false), (["10", "10"], 10, false), (["10, 10"], 10, false),
        (["10", "15"], nil, true), (["10, 15"], nil, true), (["ten"], nil, true), (["-1"], nil, true), ([""], nil, true),
    ] as [([String], Int64?, Bool)])
    func lengths(values: [String], length: Int64?, problem: Bool) {
        let head = ResponseHead(status: 200, fields: values.map { ("Content-Length", $0) })
        #expect(head.contentLength == length)
        #expect((head.framingProblem != nil) == problem)
    }

    @Test("Transfer-Encoding frames the body: Content-Length is ignored, even when it disagrees")
    func chunked() {
        let head = ResponseHead(status: 200, fields: [("Content-Length", "10"), ("Content-Length", "15"),
                                                      ("Transfer-Encoding", "chunked")])
        #expect(head.contentLength == nil && head.framingProblem == nil)
    }
}
