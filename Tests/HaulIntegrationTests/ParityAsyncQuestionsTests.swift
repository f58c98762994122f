import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Synchronization
import Testing

/// A delegate written as URLSession's async delegates are: only the async forms of the
/// questions, as a port of `urlSession(_:task:willPerformHTTPRedirection:newRequest:) async`.
private final class AsyncAnswers: DownloadSessionDelegate {
    let redirectTo: URL
    let asked = Mutex<[String]>([])
    let digests = Mutex<[String]>([])
    let ended = DispatchSemaphore(value: 0)

    init(redirectTo: URL) { self.redirectTo = redirectTo }

    func downloadSession(_ session: DownloadSession, task: DownloadTask, willPerformHTTPRedirection response: HTTPURLResponse,
                         newRequest request: URLRequest) async -> URLRequest? {
        asked.withLock { $0.append("redirect \(response.statusCode)") }
        return URLRequest(url: redirectTo)
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask,
                         didReceive challenge: URLAuthenticationChallenge) async -> (DownloadSession.AuthChallengeDisposition, URLCredential?) {
        asked.withLock { $0.append("challenge \(challenge.previousFailureCount)") }
        return (.useCredential, URLCredential(user: "user", password: "secret", persistence: .forSession))
    }
    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didFinishDownloadingTo location: URL) {
        let digest = (try? SHA256.hex(ofFileAt: location.path)) ?? "unreadable"
        digests.withLock { $0.append(digest) }
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask, didCompleteWithError error: (any Error)?) {
        ended.signal()
    }
}

extension Integration {
    @Suite("URLSession parity: the async forms of the delegate's questions")
    struct ParityAsyncQuestionsTests {
        @Test("A delegate with only the async redirect and challenge methods is asked, and its answers are used")
        func asyncQuestions() async throws {
            let json = """
            {"versions": [{"seed": 162, "size": 2097152, "etag": "\\"a\\""}], "paths": ["/real", "/other"],
             "rules": [{"when": {"path": "/start"}, "then": {"redirect": ["/real"]}},
                       {"when": {"authorizationIsNot": "Basic dXNlcjpzZWNyZXQ="},
                        "then": {"status": 401, "headers": {"WWW-Authenticate": "Basic realm=\\"vault\\""}}}]}
            """
            let behaviour = try JSONDecoder().decode(ScenarioBehaviour.self, from: Data(json.utf8))
            let server = try await ScenarioServer.start(behaviour)
            defer { Task { await server.shutdown() } }
            let delegate = AsyncAnswers(redirectTo: server.url("/other"))
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = 2
            configuration.syncsBeforeMove = false
            let session = DownloadSession(configuration: configuration, delegate: delegate)
            session.downloadTask(with: server.url("/start")).resume()
            let ended = await withCheckedContinuation { continuation in
                DispatchQueue.global().async { continuation.resume(returning: delegate.ended.wait(timeout: .now() + 30) == .success) }
            }
            #expect(ended)
            #expect(delegate.digests.withLock { $0 } == [behaviour.versions[0].content.sha256])
            let asked = delegate.asked.withLock { $0 }
            #expect(asked.first == "redirect 302" && asked.contains("challenge 0"), "\(asked)")
            let paths = server.requests.map(\.path)
            #expect(paths.contains("/other") && !paths.contains("/real"), "\(paths)")
        }
    }
}
