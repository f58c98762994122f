import CCurl
import Foundation
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The questions a task's delegate answers (redirects, credentials), and waiting for
/// connectivity.
extension DownloadTask {
    /// Routes the operation's questions to the delegate that answers for this task.
    func wireQuestions(_ operation: DownloadOperation) {
        guard answeringDelegate != nil else { return }
        let session = self.session
        operation.onRedirect = { [self] response, proposal, reply in
            guard let delegate = answeringDelegate else { return reply(proposal) }
            let once = Once(reply)
            let answer: @Sendable (URLRequest?) -> Void = { once.call($0) }
            let proposed = Sendably(proposal)
            let received = Sendably(response)
            session.delivery.enqueue {
                delegate.downloadSession(session, task: self, willPerformHTTPRedirection: received.value,
                                         newRequest: proposed.value, completionHandler: answer)
            }
        }
        operation.onChallenge = { [self] question, reply in
            guard let delegate = answeringDelegate else { return reply(.decline) }
            let once = Once(reply)
            let challenge = Sendably(Self.challenge(for: question))
            session.delivery.enqueue {
                delegate.downloadSession(session, task: self, didReceive: challenge.value) { disposition, credential in
                    switch disposition {
                    case .useCredential:
                        if let user = credential?.user, let password = credential?.password {
                            once.call(.use(user: user, password: password))
                        } else {
                            once.call(.decline)
                        }
                    case .cancelAuthenticationChallenge: once.call(.cancel)
                    default: once.call(.decline)
                    }
                }
            }
        }
    }

    /// Foundation's form of the question.
    static func challenge(for question: AuthenticationQuestion) -> URLAuthenticationChallenge {
        let scheme = question.url.scheme?.lowercased() ?? "http"
        let port = question.url.port ?? (scheme == "https" ? 443 : 80)
        let space = URLProtectionSpace(host: question.url.host ?? "", port: port, protocol: scheme,
                                       realm: question.realm, authenticationMethod: question.method)
        return URLAuthenticationChallenge(protectionSpace: space, proposedCredential: nil,
                                          previousFailureCount: question.previousFailures,
                                          failureResponse: question.response, error: nil, sender: ChallengeSender())
    }

    // MARK: Connectivity

    /// Whether `failure` means the server cannot be reached now and the task should wait and
    /// try again (`Configuration.waitsForConnectivity`), rather than fail.
    func waitsForConnectivity(after failure: DownloadFailure) -> Bool {
        let configuration = session.configuration
        guard configuration.waitsForConnectivity, configuration.identifier == nil,
              case .transport(let code, _) = failure.error,
              [CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY]
                .map({ Int($0.rawValue) }).contains(code) else { return false }
        return lock.withLock {
            guard _state == .running, _firstResponse == nil else { return false }
            let elapsed = -(startedAt ?? Date()).timeIntervalSinceNow
            return elapsed < configuration.timeoutIntervalForResource
        }
    }

    /// Tells the delegates once, then starts again after a pause that grows to 10 s.
    func waitForConnectivity() {
        let (first, attempt) = lock.withLock { () -> (Bool, Int) in
            operation = nil
            defer { announcedWaiting = true; connectivityAttempts += 1 }
            return (!announcedWaiting, connectivityAttempts)
        }
        stopTicker()
        if first {
            let session = self.session
            notify(metrics: true) { $0.downloadSession(session, taskIsWaitingForConnectivity: self) }
        }
        // Not past the resource timeout: the last try comes when it runs out.
        let left = session.configuration.timeoutIntervalForResource + (lock.withLock { startedAt } ?? Date()).timeIntervalSinceNow
        scheduleStart(after: max(0.05, min(10, 0.5 * Double(1 << min(attempt, 5)), left)))
    }
}

/// Calls a reply at most once, however often a delegate calls its completion handler.
final class Once<Value: Sendable>: Sendable {
    private let reply: Mutex<(@Sendable (Value) -> Void)?>

    init(_ reply: @escaping @Sendable (Value) -> Void) { self.reply = Mutex(reply) }

    func call(_ value: Value) {
        let reply = self.reply.withLock { current -> (@Sendable (Value) -> Void)? in
            defer { current = nil }
            return current
        }
        reply?(value)
    }
}

/// Carries a Foundation value that is not marked `Sendable` (and is not changed after this) to
/// the delegate queue.
struct Sendably<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The sender Foundation's challenge needs; answers come through the completion handler.
final class ChallengeSender: NSObject, URLAuthenticationChallengeSender, @unchecked Sendable {
    func use(_ credential: URLCredential, for challenge: URLAuthenticationChallenge) {}
    func continueWithoutCredential(for challenge: URLAuthenticationChallenge) {}
    func cancel(_ challenge: URLAuthenticationChallenge) {}
    func performDefaultHandling(for challenge: URLAuthenticationChallenge) {}
    func rejectProtectionSpaceAndContinue(with challenge: URLAuthenticationChallenge) {}
}
