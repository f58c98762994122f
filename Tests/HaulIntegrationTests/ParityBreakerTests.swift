import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Synchronization
import Testing

/// A scenario server serving one version at `paths`, with `rules` as JSON.
private func breakerServer(paths: [String], rules: String, size: Int64 = 3 << 20) async throws -> (ScenarioServer, String) {
    let json = """
    {"versions": [{"seed": 171, "size": \(size), "etag": "\\"b\\""}], "paths": \(paths), "rules": \(rules)}
    """
    let behaviour = try JSONDecoder().decode(ScenarioBehaviour.self, from: Data(json.utf8))
    return (try await ScenarioServer.start(behaviour), behaviour.versions[0].content.sha256)
}

private func breakerSession(_ delegate: (any DownloadSessionDelegate)?,
                            _ change: (inout DownloadSession.Configuration) -> Void = { _ in }) -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = 4
    configuration.syncsBeforeMove = false
    change(&configuration)
    return DownloadSession(configuration: configuration, delegate: delegate)
}

/// Keeps the redirect question's completion handler for the test to answer later.
final class HeldRedirect: DownloadSessionDelegate, Sendable {
    let handler = Mutex<(@Sendable (URLRequest?) -> Void)?>(nil)
    let proposal = Mutex<URLRequest?>(nil)
    let digests = Mutex<[String]>([])
    let ended = DispatchSemaphore(value: 0)

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didFinishDownloadingTo location: URL) {
        let digest = (try? SHA256.hex(ofFileAt: location.path)) ?? "unreadable"
        digests.withLock { $0.append(digest) }
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask, didCompleteWithError error: (any Error)?) {
        ended.signal()
    }
    func downloadSession(_ session: DownloadSession, task: DownloadTask, willPerformHTTPRedirection response: HTTPURLResponse,
                         newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        proposal.withLock { $0 = request }
        handler.withLock { $0 = completionHandler }
    }
}

/// A session delegate ported from a `URLSessionTaskDelegate` that only answers challenges, for a
/// session whose tasks use completion handlers.
final class ChallengeOnly: DownloadTaskDelegate, Sendable {
    let asked = Mutex(0)

    func downloadSession(_ session: DownloadSession, task: DownloadTask, didReceive challenge: URLAuthenticationChallenge,
                         completionHandler: @escaping @Sendable (DownloadSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        asked.withLock { $0 += 1 }
        completionHandler(.useCredential, URLCredential(user: "user", password: "secret", persistence: .forSession))
    }
}

/// A task delegate that only watches progress: it answers no questions of its own.
final class ProgressOnly: DownloadTaskDelegate, Sendable {
    let writes = Mutex(0)

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didWriteData bytesWritten: Int64,
                         totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64) {
        writes.withLock { $0 += 1 }
    }
}

extension Integration {
    @Suite("URLSession parity under hostile use")
    struct ParityBreakerTests {
        @Test("A task suspended while its delegate decides a redirect sends nothing until resumed")
        func suspendDuringRedirectQuestion() async throws {
            let (server, digest) = try await breakerServer(
                paths: ["/real"], rules: #"[{"when": {"path": "/start"}, "then": {"redirect": ["/real"]}}]"#)
            defer { Task { await server.shutdown() } }
            let delegate = HeldRedirect()
            let task = breakerSession(delegate).downloadTask(with: server.url("/start"))
            task.resume()
            for _ in 0..<200 where delegate.handler.withLock({ $0 == nil }) { try await Task.sleep(for: .milliseconds(10)) }
            let answer = try #require(delegate.handler.withLock { $0 })
            task.suspend()
            answer(delegate.proposal.withLock { $0 })
            try await Task.sleep(for: .milliseconds(800))
            #expect(!server.requests.contains { $0.path == "/real" }, "a suspended task sent a request")
            #expect(task.state == .suspended)
            #expect(delegate.digests.withLock { $0 }.isEmpty, "a suspended task finished")
            task.resume()
            #expect(await EventLog.wait(delegate.ended))
            #expect(delegate.digests.withLock { $0 } == [digest])
        }

        @Test("An async download started in an already-cancelled Swift task throws URLError.cancelled instead of hanging")
        func asyncDownloadInCancelledTask() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 1 << 20, seed: 172)), at: "/f")
            let session = breakerSession(nil)
            let url = server.url("/f")
            // The cancellation and the async call race: try it often enough to lose the race.
            for round in 0..<60 {
                let outcome = Mutex<String?>(nil)
                _ = Task {
                    withUnsafeCurrentTask { $0?.cancel() }
                    do {
                        let (location, _) = try await session.download(from: url)
                        try? FileManager.default.removeItem(at: location)
                        outcome.withLock { $0 = "finished" }
                    } catch {
                        outcome.withLock { $0 = "\((error as? URLError)?.code.rawValue ?? 0)" }
                    }
                }
                for _ in 0..<300 where outcome.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
                let result = outcome.withLock { $0 }
                #expect(result == "\(URLError.Code.cancelled.rawValue)", "round \(round): \(result ?? "hangs")")
                if result == nil { break }
            }
        }

        @Test("Twelve redirects are followed with or without a delegate, as URLSession follows up to 16",
              arguments: [false, true])
        func longRedirectChain(delegate: Bool) async throws {
            var rules: [String] = []
            for n in 0..<12 { rules.append(#"{"when": {"path": "/r\#(n)"}, "then": {"redirect": ["/r\#(n + 1)"]}}"#) }
            let (server, digest) = try await breakerServer(paths: ["/r12"], rules: "[" + rules.joined(separator: ",") + "]",
                                                           size: 4096)
            defer { Task { await server.shutdown() } }
            let (location, response) = try await breakerSession(delegate ? EventLog() : nil).download(from: server.url("/r0"))
            defer { try? FileManager.default.removeItem(at: location) }
            #expect(try SHA256.hex(ofFileAt: location.path) == digest)
            #expect(response.url?.path == "/r12")
        }

        @Test("A redirect to a scheme that is not HTTP fails as unsupportedURL, also when a delegate follows it")
        func nonHTTPRedirectFollowed() async throws {
            let (server, _) = try await breakerServer(paths: [], rules: """
                [{"when": {"path": "/start"}, "then": {"status": 302, "headers": {"Location": "ftp://127.0.0.1:1/x"}}}]
                """)
            defer { Task { await server.shutdown() } }
            let log = EventLog()
            let started = Date()
            let error = await #expect(throws: URLError.self) {
                _ = try await breakerSession(log).download(from: server.url("/start"))
            }
            #expect(error?.code == .unsupportedURL)
            #expect(log.events.contains("redirect 302 /x"))
            #expect(Date().timeIntervalSince(started) < 2)
        }

        @Test("Metrics hold one transaction per request, the redirect's and the challenge's included")
        func questionTransactions() async throws {
            let (server, _) = try await breakerServer(paths: ["/real"], rules: """
                [{"when": {"path": "/start"}, "then": {"redirect": ["/real"]}},
                 {"when": {"path": "/real", "authorizationIsNot": "Basic dXNlcjpzZWNyZXQ="},
                  "then": {"status": 401, "headers": {"WWW-Authenticate": "Basic realm=\\"vault\\""}}}]
                """, size: 4096)
            defer { Task { await server.shutdown() } }
            let log = EventLog(credentials: { _ in (.useCredential, URLCredential(user: "user", password: "secret", persistence: .none)) })
            let task = breakerSession(log).downloadTask(with: server.url("/start"))
            task.resume()
            #expect(await EventLog.wait(log.ended))
            #expect(server.requests.count == 3)
            #expect(log.events.contains("metrics 3"), "\(log.events)")
        }

        @Test("timeoutIntervalForResource bounds the whole task, the wait for connectivity included")
        func resourceTimeoutCountsTheWait() async throws {
            let reserved = try await TestServer.start()
            let port = reserved.port
            await reserved.shutdown()
            let log = EventLog()
            let session = breakerSession(log) {
                $0.waitsForConnectivity = true
                $0.timeoutIntervalForResource = 3
            }
            let task = session.downloadTask(with: URL(string: "http://127.0.0.1:\(port)/f")!)
            let started = Date()
            task.resume()
            #expect(await EventLog.wait(log.waiting, seconds: 10))
            try await Task.sleep(for: .milliseconds(1500))
            // The server comes up, but too slow to finish within what is left.
            let server = try await TestServer.start(port: port)
            defer { Task { await server.shutdown() } }
            server.serve(ServedFile(content: GeneratedContent(size: 8 << 20, seed: 176), bytesPerSecond: 256 << 10), at: "/f")
            #expect(await EventLog.wait(log.ended, seconds: 30))
            let took = Date().timeIntervalSince(started)
            #expect(took < 3.8, "took \(took) s with a 3 s resource timeout")
            #expect((task.error as? URLError)?.code == .timedOut)
        }

        @Test("A session's delegate may be a task delegate alone (ported from URLSessionTaskDelegate), as URLSession's may")
        func taskDelegateAsSessionDelegate() async throws {
            let (server, digest) = try await breakerServer(paths: ["/f"], rules: """
                [{"when": {"authorizationIsNot": "Basic dXNlcjpzZWNyZXQ="},
                  "then": {"status": 401, "headers": {"WWW-Authenticate": "Basic realm=\\"vault\\""}}}]
                """)
            defer { Task { await server.shutdown() } }
            let delegate = ChallengeOnly()
            let session = DownloadSession(configuration: .default, delegate: delegate, delegateQueue: nil)
            let outcome = Mutex<String?>(nil)
            let done = DispatchSemaphore(value: 0)
            session.downloadTask(with: server.url("/f")) { location, response, error in
                outcome.withLock { $0 = location.flatMap { try? SHA256.hex(ofFileAt: $0.path) } ?? "\(String(describing: error))" }
                done.signal()
            }.resume()
            #expect(await EventLog.wait(done))
            #expect(outcome.withLock { $0 } == digest)
            #expect(delegate.asked.withLock { $0 } == 1)
        }

        @Test("A task delegate that does not answer a question leaves it to the session's delegate, as URLSession does")
        func taskDelegateLeavesQuestionsToSession() async throws {
            let (server, digest) = try await breakerServer(paths: ["/f", "/real"], rules: """
                [{"when": {"path": "/start"}, "then": {"redirect": ["/real"]}},
                 {"when": {"path": "/f", "authorizationIsNot": "Basic dXNlcjpzZWNyZXQ="},
                  "then": {"status": 401, "headers": {"WWW-Authenticate": "Basic realm=\\"vault\\""}}}]
                """)
            defer { Task { await server.shutdown() } }
            // The session's delegate refuses every redirect and knows the password.
            let log = EventLog(redirect: { _ in nil },
                               credentials: { _ in (.useCredential, URLCredential(user: "user", password: "secret", persistence: .none)) })
            let session = breakerSession(log)
            let (location, _) = try await session.download(from: server.url("/f"), delegate: ProgressOnly())
            defer { try? FileManager.default.removeItem(at: location) }
            #expect(try SHA256.hex(ofFileAt: location.path) == digest)
            let error = await #expect(throws: URLError.self) {
                _ = try await session.download(from: server.url("/start"), delegate: ProgressOnly())
            }
            #expect(error?.code == .fileDoesNotExist, "the session's delegate refused the redirect")
            #expect(!server.requests.contains { $0.path == "/real" })
            #expect(log.events.contains("redirect 302 /real"))
            #expect(log.events.contains { $0.hasPrefix("challenge") })
        }

        @Test("A header the server sends twice keeps both values in the response, joined as Foundation joins them")
        func repeatedHeaders() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 64 << 10, seed: 177)
            var file = ServedFile(content: content)
            file.extraHeaders = [("Link", "<https://a.example/>; rel=\"a\""), ("link", "<https://b.example/>; rel=\"b\"")]
            server.serve(file, at: "/f")
            let (location, response) = try await breakerSession(nil).download(from: server.url("/f"))
            defer { try? FileManager.default.removeItem(at: location) }
            let http = try #require(response as? HTTPURLResponse)
            #expect(http.value(forHTTPHeaderField: "Link") == "<https://a.example/>; rel=\"a\", <https://b.example/>; rel=\"b\"")
            #expect(http.statusCode == 200 && http.expectedContentLength == content.size)
            #expect(try SHA256.hex(ofFileAt: location.path) == content.sha256)
        }
    }
}
