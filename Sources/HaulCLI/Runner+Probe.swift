import Foundation
import Haul
import Synchronization

extension Runner {
    /// The server's answer to a one-byte probe of `url`, or `nil` once Ctrl-C arrives first: a
    /// server that keeps the probe waiting (up to the request timeout) never holds up Ctrl-C. The
    /// probe left behind ends by its own timeout.
    func probe(_ url: URL, unless interruption: Interruption) async -> DownloadProbe? {
        let session = session
        let answer = Answer()
        return await withCheckedContinuation { (continuation: CheckedContinuation<DownloadProbe?, Never>) in
            answer.waiting(continuation)
            Task { answer.give(await session.probe(url)) }
            Task {
                while !answer.isGiven, !interruption.happened { try? await Task.sleep(for: .milliseconds(20)) }
                answer.give(nil)
            }
        }
    }
}

/// The first of two answers, handed on once.
private final class Answer: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<DownloadProbe?, Never>?, given: Bool)>((nil, false))

    func waiting(_ continuation: CheckedContinuation<DownloadProbe?, Never>) {
        state.withLock { $0.continuation = continuation }
    }

    var isGiven: Bool { state.withLock { $0.given } }

    func give(_ probe: DownloadProbe?) {
        let continuation = state.withLock { current -> CheckedContinuation<DownloadProbe?, Never>? in
            guard !current.given else { return nil }
            current.given = true
            defer { current.continuation = nil }
            return current.continuation
        }
        continuation?.resume(returning: probe)
    }
}
