import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Receives one task's events, like `URLSessionTaskDelegate` (with the session-level calls of
/// `URLSessionDelegate`): give one to a task (`DownloadTask.delegate`, or the `delegate:` of the
/// async `download` methods) or make the session's delegate conform to `DownloadSessionDelegate`,
/// which refines this protocol.
///
/// Every method has a default implementation that does what URLSession does when a delegate
/// does not implement it. Calls arrive on the session's delegate queue, in order, never
/// concurrently.
///
/// A task's own delegate hears that task's events first, then the session's delegate hears them
/// too (once, when both are the same object). Questions that need one answer (a redirect, an
/// authentication challenge) go to the task's delegate when it has one, else to the session's;
/// a task delegate that does not implement the question's method leaves it to the session's.
public protocol DownloadTaskDelegate: AnyObject, Sendable {
    /// Bytes were written since the last call (coalesced: at most about every 100 ms).
    /// `totalBytesExpectedToWrite` is `NSURLSessionTransferSizeUnknown` (-1) while unknown.
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                         didWriteData bytesWritten: Int64, totalBytesWritten: Int64,
                         totalBytesExpectedToWrite: Int64)

    /// A task made from resume data continues; `fileOffset` counts the bytes already on disk
    /// that will not be fetched again (they need not be one prefix). Called once the server's
    /// answer lets them stand (before the first `didWriteData`); when the file changed on the
    /// server it is called once, with 0, as URLSession does. Also called with 0 when a download
    /// starts over for any other reason.
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                         didResumeAtOffset fileOffset: Int64, expectedTotalBytes: Int64)

    /// The task ended: `error` is nil on success.
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         didCompleteWithError error: (any Error)?)

    /// The session made `task` (from any `downloadTask` or `download` method), as
    /// `urlSession(_:didCreateTask:)`.
    func downloadSession(_ session: DownloadSession, didCreateTask task: DownloadTask)

    /// `task` cannot reach its server and waits for connectivity instead of failing
    /// (`Configuration.waitsForConnectivity`); called once per wait.
    func downloadSession(_ session: DownloadSession, taskIsWaitingForConnectivity task: DownloadTask)

    /// The server redirects the task's first request. Call `completionHandler` with `request`
    /// to follow it, with another request to go there instead, or with `nil` to refuse: the
    /// task then fails with the redirect's status (`task.response` holds the redirect).
    /// The default follows.
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
                         completionHandler: @escaping @Sendable (URLRequest?) -> Void)

    /// The server asks for credentials (HTTP Basic or Digest: `401` with `WWW-Authenticate`).
    /// Answer `.useCredential` with a `URLCredential(user:password:persistence:)` to try them
    /// (the challenge comes again, with `previousFailureCount` raised, if they are refused),
    /// `.cancelAuthenticationChallenge` to cancel the task, or `.performDefaultHandling` /
    /// `.rejectProtectionSpace` to let the task fail with `URLError.userAuthenticationRequired`
    /// (the default). Server-trust challenges do not exist on Linux: use
    /// `Configuration.caCertificateFile` or `verifiesTLSCertificates`.
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         didReceive challenge: URLAuthenticationChallenge,
                         completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void)

    /// The redirect question in URLSession's async form: return `request` to follow, another
    /// request to go there instead, or `nil` to refuse. Implement either form; the
    /// completion-handler form, unless implemented itself, asks this one.
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest) async -> URLRequest?

    /// The credentials question in URLSession's async form (see the completion-handler form).
    /// Implement either form; the completion-handler form, unless implemented itself, asks
    /// this one.
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         didReceive challenge: URLAuthenticationChallenge) async -> (URLSession.AuthChallengeDisposition, URLCredential?)

    /// The task's timings, one transaction per HTTP request it made (probe, segments, retries),
    /// measured by libcurl. Called just before `didCompleteWithError` (after
    /// `didFinishDownloadingTo`, as URLSession orders them).
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         didFinishCollecting metrics: DownloadTaskMetrics)

    /// The session was invalidated and every task it had has ended; the session then lets go
    /// of its delegate. `error` is nil after `finishTasksAndInvalidate()` or
    /// `invalidateAndCancel()`.
    func downloadSession(_ session: DownloadSession, didBecomeInvalidWithError error: (any Error)?)

    /// A background session was created again (in this process) and every event of its tasks
    /// that ended while no process was attached has been delivered, as URLSession's
    /// `urlSessionDidFinishEvents(forBackgroundURLSession:)`.
    func downloadSessionDidFinishEvents(forBackgroundSession session: DownloadSession)
}

/// Receives a session's download events, like `URLSessionDownloadDelegate`: code written for
/// URLSession ports by renaming `urlSession(` to `downloadSession(` and the types
/// (`URLSessionDownloadDelegate` → `DownloadSessionDelegate`, `URLSessionTaskDelegate` →
/// `DownloadTaskDelegate`, `URLSessionDownloadTask` → `DownloadTask`).
///
/// As in URLSession, `downloadSession(_:downloadTask:didFinishDownloadingTo:)` is required, so
/// a delegate whose methods were not renamed (or name `URLSessionTask` instead of
/// `DownloadTask`) does not compile instead of silently never being called.
public protocol DownloadSessionDelegate: DownloadTaskDelegate {
    /// The download finished. The file at `location` is valid only during this call: move it or
    /// open it before returning; Haul deletes it afterwards. Tasks made with a completion
    /// handler, or by the async `download` methods, deliver their file there instead.
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                         didFinishDownloadingTo location: URL)
}

/// Default implementations: what URLSession does when a delegate leaves a method out.
extension DownloadTaskDelegate {
    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                                didWriteData bytesWritten: Int64, totalBytesWritten: Int64,
                                totalBytesExpectedToWrite: Int64) {}

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                                didResumeAtOffset fileOffset: Int64, expectedTotalBytes: Int64) {}

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, task: DownloadTask,
                                didCompleteWithError error: (any Error)?) {}

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, didCreateTask task: DownloadTask) {}

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, taskIsWaitingForConnectivity task: DownloadTask) {}

    /// Asks the async form (which a ported delegate may implement instead).
    public func downloadSession(_ session: DownloadSession, task: DownloadTask,
                                willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
                                completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        let question = Sendably((response, request))
        Task {
            let (response, request) = question.value
            completionHandler(await self.downloadSession(session, task: task, willPerformHTTPRedirection: response,
                                                         newRequest: request))
        }
    }

    /// A task's own delegate leaves the question to the session's delegate, as URLSession does
    /// when a task delegate does not implement it; the session's delegate follows the redirect.
    public func downloadSession(_ session: DownloadSession, task: DownloadTask,
                                willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest) async -> URLRequest? {
        guard let shared = session.delegate, shared !== self else { return request }
        let question = Sendably((response, request))
        return await withCheckedContinuation { (answer: CheckedContinuation<URLRequest?, Never>) in
            shared.downloadSession(session, task: task, willPerformHTTPRedirection: question.value.0,
                                   newRequest: question.value.1) { answer.resume(returning: $0) }
        }
    }

    /// Asks the async form (which a ported delegate may implement instead).
    public func downloadSession(_ session: DownloadSession, task: DownloadTask,
                                didReceive challenge: URLAuthenticationChallenge,
                                completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        let question = Sendably(challenge)
        Task {
            let (disposition, credential) = await self.downloadSession(session, task: task, didReceive: question.value)
            completionHandler(disposition, credential)
        }
    }

    /// A task's own delegate leaves the challenge to the session's delegate, as URLSession does
    /// when a task delegate does not implement it; the session's delegate asks for default
    /// handling: the task fails with `URLError.userAuthenticationRequired`.
    public func downloadSession(_ session: DownloadSession, task: DownloadTask,
                                didReceive challenge: URLAuthenticationChallenge) async -> (URLSession.AuthChallengeDisposition, URLCredential?) {
        guard let shared = session.delegate, shared !== self else { return (.performDefaultHandling, nil) }
        let question = Sendably(challenge)
        return await withCheckedContinuation { (answer: CheckedContinuation<(URLSession.AuthChallengeDisposition, URLCredential?), Never>) in
            shared.downloadSession(session, task: task, didReceive: question.value) { answer.resume(returning: ($0, $1)) }
        }
    }

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, task: DownloadTask,
                                didFinishCollecting metrics: DownloadTaskMetrics) {}

    /// Does nothing.
    public func downloadSession(_ session: DownloadSession, didBecomeInvalidWithError error: (any Error)?) {}

    /// Does nothing.
    public func downloadSessionDidFinishEvents(forBackgroundSession session: DownloadSession) {}
}

extension DownloadSession {
    /// URLSession's answers to an authentication challenge, under the name ported code uses.
    public typealias AuthChallengeDisposition = URLSession.AuthChallengeDisposition
}

