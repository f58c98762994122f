/// What runs one task's download: here (`DownloadOperation`) or in the daemon
/// (`RemoteDownload`, for background sessions). `DownloadTask` drives either the same way.
protocol DownloadRunner: AnyObject, Sendable {
    /// Sets the completion handler (before `start()`); called on the session queue.
    func setCompletion(_ completion: @escaping (Result<DownloadResult, DownloadFailure>) -> Void)
    /// Called on the session queue with the first response head and the URL after redirects.
    var onResponse: (ResponseHead, String?) -> Void { get set }
    /// Called on the session queue when the download started over.
    var onRestart: (String) -> Void { get set }
    func start()
    func cancel(producingResumeData: Bool)
    func suspend()
    func resume()
    /// Bytes done, the total when known, connections now (read on the session queue).
    var progress: (done: Int64, expected: Int64?, connections: Int) { get }
    /// Changes the receive limit while running (0: none).
    func setRateLimit(_ bytesPerSecond: Int64)
}

extension DownloadOperation: DownloadRunner {}
