import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a task's HTTP requests cost, as `URLSessionTaskMetrics`: delivered to
/// `downloadSession(_:task:didFinishCollecting:)` just before the task completes.
public struct DownloadTaskMetrics: Sendable {
    /// One entry per request the task made (the first request, each segment, each retry), in
    /// the order they ended. A download of very many requests keeps the first 1,000.
    public let transactionMetrics: [DownloadTaskTransactionMetrics]
    /// From `resume()` to the end of the task.
    public let taskInterval: DateInterval
    /// Redirects followed by the first request.
    public let redirectCount: Int
}

/// One HTTP request of a task, timed by libcurl, as `URLSessionTaskTransactionMetrics`. Dates are
/// `nil` for steps that did not happen (no name lookup or connect on a reused connection, no TLS
/// handshake over plain HTTP).
public struct DownloadTaskTransactionMetrics: Sendable {
    /// The request as sent (its URL after redirects, its `Range` header).
    public let request: URLRequest
    /// The response's status and headers, when one arrived.
    public var response: HTTPURLResponse? { answer?.response }
    /// The response head, made into `response` the first time it is read: most requests'
    /// metrics are never looked at, and a batch of small files makes hundreds of them.
    let answer: TransactionResponse?
    /// When the request was handed to libcurl (always set; optional as URLSession's is, so
    /// ported `if let` code compiles).
    public let fetchStartDate: Date?
    public let domainLookupStartDate: Date?
    public let domainLookupEndDate: Date?
    public let connectStartDate: Date?
    public let secureConnectionStartDate: Date?
    public let secureConnectionEndDate: Date?
    public let connectEndDate: Date?
    /// When the request started to go out.
    public let requestStartDate: Date?
    public let requestEndDate: Date?
    /// When the first byte of the response arrived.
    public let responseStartDate: Date?
    /// When the transfer ended (completed, failed or stopped by Haul).
    public let responseEndDate: Date?
    /// `"http/1.1"`, `"http/2"`, or `nil` when no response arrived.
    public let networkProtocolName: String?
    /// Whether the request went over a connection an earlier request had opened.
    public let isReusedConnection: Bool
    public let isProxyConnection: Bool
    public let countOfResponseBodyBytesReceived: Int64
    public let countOfResponseHeaderBytesReceived: Int64
    public let countOfRequestHeaderBytesSent: Int64
    public let remoteAddress: String?
    public let remotePort: Int?
    public let localAddress: String?
    public let localPort: Int?
}

/// A response head that becomes an `HTTPURLResponse` when it is first asked for, then stays
/// that one object.
final class TransactionResponse: @unchecked Sendable {
    // Unchecked: `made` is used under `lock` only; `url` and `head` never change.
    private let url: URL
    private let head: ResponseHead
    private let lock = NSLock()
    private var made: HTTPURLResponse??

    init(url: URL, head: ResponseHead) {
        self.url = url
        self.head = head
    }

    var response: HTTPURLResponse? {
        lock.withLock {
            if let made { return made }
            let response = HTTPURLResponse(url: url, statusCode: head.status, httpVersion: "HTTP/1.1",
                                           headerFields: head.headerFields)
            made = .some(response)
            return response
        }
    }
}
