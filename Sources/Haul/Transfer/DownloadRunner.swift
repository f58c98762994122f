/// What runs one task's download: here (`DownloadOperation`) or in the daemon
/// (`RemoteDownload`, for background sessions). `DownloadTask` drives either the same way.
protocol DownloadRunner: AnyObject, Sendable {
    /// Sets the completion handler (before `start()`); called on the session queue.
    func setCompletion(_ completion: @escaping (Result<DownloadResult, DownloadFailure>) -> Void)
    /// Called on the session queue with the first response head and the URL after redirects.
    var onResponse: (ResponseHead, String?) -> Void { get set }
    /// Called on the session queue when the download started over.
    var onRestart: (String) -> Void { get set }
    /// Called on the session queue, at most once, when every byte has arrived and only the last
    /// steps are left (the hash's tail, the sync, the rename).
    var onReceivedAll: () -> Void { get set }
    func start()
    func cancel(producingResumeData: Bool)
    func suspend()
    func resume()
    /// Bytes done, the total when known, connections now (read on the session queue).
    var progress: (done: Int64, expected: Int64?, connections: Int) { get }
    /// Changes the receive limit while running (0: none).
    func setRateLimit(_ bytesPerSecond: Int64)
    /// The requests made so far, timed (read on the session queue).
    var collectedMetrics: CollectedMetrics { get }
}

/// The timings of a download's requests, for `DownloadTaskMetrics`.
struct CollectedMetrics: Sendable {
    /// At most `limit` requests are kept, so a long download's memory stays flat.
    static let limit = 1000
    var transactions: [DownloadTaskTransactionMetrics] = []
    var redirects = 0

    mutating func append(_ transaction: DownloadTaskTransactionMetrics) {
        if transactions.count < Self.limit { transactions.append(transaction) }
    }
}

extension DownloadOperation: DownloadRunner {}
