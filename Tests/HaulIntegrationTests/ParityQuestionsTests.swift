import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer
import Synchronization
import Testing

/// A scenario server serving one version at `paths`, with `rules` as JSON.
private func questionServer(paths: [String], rules: String) async throws -> (ScenarioServer, String) {
    let json = """
    {"versions": [{"seed": 161, "size": 3145728, "etag": "\\"q\\""}], "paths": \(paths), "rules": \(rules)}
    """
    let behaviour = try JSONDecoder().decode(ScenarioBehaviour.self, from: Data(json.utf8))
    return (try await ScenarioServer.start(behaviour), behaviour.versions[0].content.sha256)
}

private func questionSession(_ delegate: EventLog, _ change: (inout DownloadSession.Configuration) -> Void = { _ in })
    -> DownloadSession {
    var configuration = DownloadSession.Configuration()
    configuration.connectionsPerDownload = 4
    configuration.adaptsConnectionCount = false  // segments, even from a fast loopback server
    configuration.syncsBeforeMove = false
    change(&configuration)
    return DownloadSession(configuration: configuration, delegate: delegate)
}

/// Basic `user:secret`.
private let goodAuthorization = "Basic dXNlcjpzZWNyZXQ="
private let authRules = """
[{"when": {"authorizationIsNot": "\(goodAuthorization)"},
  "then": {"status": 401, "headers": {"WWW-Authenticate": "Basic realm=\\"vault\\""}}}]
"""

extension Integration {
    @Suite("URLSession parity: redirects, credentials, connectivity")
    struct ParityQuestionsTests {
        @Test("willPerformHTTPRedirection follows, redirects elsewhere, or refuses (the task fails with the 302)",
              arguments: ["follow", "elsewhere", "refuse"])
        func redirects(answer: String) async throws {
            let (server, digest) = try await questionServer(paths: ["/real", "/other"],
                                                            rules: #"[{"when": {"path": "/start"}, "then": {"redirect": ["/real"]}}]"#)
            defer { Task { await server.shutdown() } }
            let other = server.url("/other")
            let log = EventLog(redirect: { request in
                switch answer {
                case "follow": request
                case "elsewhere": URLRequest(url: other)
                default: nil
                }
            })
            let task = questionSession(log).downloadTask(with: server.url("/start"))
            task.resume()
            #expect(await EventLog.wait(log.ended))
            #expect(log.events.contains("redirect 302 /real"))
            let paths = server.requests.map(\.path)
            switch answer {
            case "follow":
                #expect(log.finishedDigests == [digest])
                #expect(!paths.contains("/other"))
                #expect(task.currentRequest?.url?.path == "/real")
            case "elsewhere":
                #expect(log.finishedDigests == [digest])
                #expect(!paths.contains("/real") && paths.contains("/other"))
            default:
                #expect(log.finishedDigests.isEmpty)
                #expect((task.error as? URLError)?.code == .fileDoesNotExist)
                #expect((task.response as? HTTPURLResponse)?.statusCode == 302)
            }
        }

        @Test("A Basic challenge is answered with the delegate's credential; every segment then carries it")
        func basicCredentials() async throws {
            let (server, digest) = try await questionServer(paths: ["/f"], rules: authRules)
            defer { Task { await server.shutdown() } }
            let attempts = Mutex(0)
            let log = EventLog(credentials: { challenge in
                // A wrong password first: the challenge comes again with the failure counted.
                let password = attempts.withLock { count -> String in
                    count += 1
                    return count == 1 ? "wrong" : "secret"
                }
                return (.useCredential, URLCredential(user: "user", password: password, persistence: .forSession))
            })
            let task = questionSession(log).downloadTask(with: server.url("/f"))
            task.resume()
            #expect(await EventLog.wait(log.ended))
            #expect(log.finishedDigests == [digest])
            #expect(log.events.filter { $0.hasPrefix("challenge") } == [
                "challenge \(NSURLAuthenticationMethodHTTPBasic) vault 0",
                "challenge \(NSURLAuthenticationMethodHTTPBasic) vault 1",
            ])
            #expect(server.requests.count >= 4, "the file was split")
            #expect((task.response as? HTTPURLResponse)?.statusCode == 200)
        }

        @Test("A challenge cancelled or left to default handling fails as URLSession's does",
              arguments: [("cancel", URLError.Code.cancelled), ("default", URLError.Code.userAuthenticationRequired)])
        func declinedCredentials(answer: String, code: URLError.Code) async throws {
            let (server, _) = try await questionServer(paths: ["/f"], rules: authRules)
            defer { Task { await server.shutdown() } }
            let log = EventLog(credentials: { _ in
                (answer == "cancel" ? .cancelAuthenticationChallenge : .performDefaultHandling, nil)
            })
            let task = questionSession(log).downloadTask(with: server.url("/f"))
            task.resume()
            #expect(await EventLog.wait(log.ended))
            #expect((task.error as? URLError)?.code == code)
            #expect(log.finishedDigests.isEmpty)
            if answer == "default" { #expect((task.response as? HTTPURLResponse)?.statusCode == 401) }
        }

        @Test("waitsForConnectivity: an unreachable server makes the task wait (announced once) instead of failing")
        func waitsForConnectivity() async throws {
            let log = EventLog()
            let session = questionSession(log) {
                $0.waitsForConnectivity = true
                $0.timeoutIntervalForResource = 2
            }
            // Port 1 on loopback refuses connections.
            let task = session.downloadTask(with: URL(string: "http://127.0.0.1:1/f")!)
            let started = Date()
            task.resume()
            #expect(await EventLog.wait(log.waiting, seconds: 10))
            #expect(await EventLog.wait(log.ended, seconds: 20))
            #expect(Date().timeIntervalSince(started) >= 2)
            #expect(log.events.filter { $0 == "waiting" }.count == 1)
            #expect((task.error as? URLError)?.code == .cannotConnectToHost)
            // Without it, the same task fails after its retries, without waiting.
            let quick = EventLog()
            let plain = questionSession(quick).downloadTask(with: URL(string: "http://127.0.0.1:1/f")!)
            plain.resume()
            #expect(await EventLog.wait(quick.ended, seconds: 20))
            #expect(!quick.events.contains("waiting"))
        }
    }
}
