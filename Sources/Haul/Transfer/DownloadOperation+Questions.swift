import CCurl
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A server's request for credentials, as the operation saw it.
struct AuthenticationQuestion: Sendable {
    var url: URL
    var realm: String?
    /// `NSURLAuthenticationMethodHTTPBasic` or `NSURLAuthenticationMethodHTTPDigest`.
    var method: String
    var previousFailures: Int
    var response: HTTPURLResponse
}

/// What the task's delegate answered to an `AuthenticationQuestion`.
enum AuthenticationAnswer: Sendable {
    case use(user: String, password: String)
    case cancel
    /// Let the `401` through: the download fails with it.
    case decline
}

/// Questions a delegate answers before the first response counts: whether to follow a redirect,
/// and which credentials to send. The request waits (its connection closed) until the answer.
extension DownloadOperation {
    /// At most this many redirects and credential rounds for one download.
    static let maxRedirects = 16
    static let maxAuthenticationRounds = 8

    /// Whether `head`, the answer to the first request, is a question for the delegate; if so
    /// the request is stopped (its `transaction` kept for the metrics) and started again once
    /// the delegate answered.
    func intercepts(_ head: ResponseHead, easy: CurlEasy, request: DownloadStateMachine.Request,
                    transaction: () -> DownloadTaskTransactionMetrics) -> Bool {
        guard !reportedResponse, request.mirror == 0 else { return false }
        let asksRedirect = onRedirect != nil && [301, 302, 303, 307, 308].contains(head.status)
        let asksChallenge = onChallenge != nil && head.status == 401
        // Most answers are neither: no URL or response is made for them.
        guard !declinesQuestions, asksRedirect || asksChallenge else { return false }
        let url = URL(string: easy.effectiveURL ?? primaryURL) ?? URL(fileURLWithPath: "/")
        guard let response = HTTPURLResponse(url: url, statusCode: head.status, httpVersion: "HTTP/1.1",
                                             headerFields: head.headerFields) else { return false }
        if let ask = onRedirect, asksRedirect,
           let location = head.fields.last(where: { $0.name.lowercased() == "location" })?.value,
           let target = URL(string: location, relativeTo: url)?.absoluteURL {
            stopForQuestion(request.segment, transaction: transaction())
            collectedMetrics.redirects += 1
            guard collectedMetrics.redirects <= Self.maxRedirects else {
                failed(.transport(code: Int(CURLE_TOO_MANY_REDIRECTS.rawValue),
                                  message: "more than \(Self.maxRedirects) redirects"))
                return true
            }
            let proposal = redirectProposal(from: url, to: target, status: head.status)
            ask(response, proposal) { [self] answer in
                multi.queue.async { [self] in redirectAnswered(answer, request: request) }
            }
            return true
        }
        if let ask = onChallenge, asksChallenge,
           let method = Self.challengeMethod(head), authenticationRounds < Self.maxAuthenticationRounds {
            stopForQuestion(request.segment, transaction: transaction())
            let question = AuthenticationQuestion(url: url, realm: Self.realm(head), method: method,
                                                  previousFailures: authenticationRounds, response: response)
            authenticationRounds += 1
            ask(question) { [self] answer in
                multi.queue.async { [self] in authenticationAnswered(answer, method: method, request: request) }
            }
            return true
        }
        return false
    }

    /// Closes the request's connection while the delegate thinks; the machine still counts the
    /// request as running, so nothing else starts in its place.
    private func stopForQuestion(_ segment: Int, transaction: DownloadTaskTransactionMetrics) {
        collectedMetrics.append(transaction)
        if let easy = easies.removeValue(forKey: segment) { multi.remove(easy) }
    }

    /// The request a redirect leads to, as URLSession proposes it: a `303` (and a `301` or
    /// `302` of a `POST`) becomes a GET without body; credentials stay with their origin.
    private func redirectProposal(from: URL, to target: URL, status: Int) -> URLRequest {
        var proposal = URLRequest(url: target)
        var method = primaryMethod
        var body = primaryBody
        if status == 303 || ((status == 301 || status == 302) && method == "POST") {
            method = "GET"
            body = nil
        }
        proposal.httpMethod = method
        proposal.httpBody = body.map { Data($0) }
        let crossOrigin = !Self.sameOrigin(from.absoluteString, target.absoluteString)
        for header in primaryHeaders where !(crossOrigin && Self.isCredential(header)) {
            guard let colon = header.firstIndex(of: ":") else { continue }
            let name = String(header[..<colon])
            let value = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            proposal.setValue(value, forHTTPHeaderField: name)
        }
        return proposal
    }

    private func redirectAnswered(_ answer: URLRequest?, request: DownloadStateMachine.Request) {
        guard !machine.isFinished, running != nil else { return }
        guard let answer, let url = answer.url else {
            // Refused: ask the same again, and let the redirect itself through.
            declinesQuestions = true
            startOrDefer(request)
            return
        }
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
            // Followed somewhere Haul cannot go: fail as curl does when it follows one itself.
            run(machine.diskFailed(.transport(code: Int(CURLE_UNSUPPORTED_PROTOCOL.rawValue),
                                              message: "a redirect to \(url.scheme ?? "a URL without a scheme"), which is not HTTP")))
            return
        }
        primaryURL = url.absoluteString
        let method = answer.httpMethod?.uppercased() ?? "GET"
        primaryMethod = method
        primaryBody = answer.httpBody.map { Array($0) }
        primaryHeaders = (answer.allHTTPHeaderFields ?? [:])
            .filter { !["range", "if-range"].contains($0.key.lowercased()) }
            .sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        if credential != nil, !Self.sameOrigin(primaryURL, credentialOrigin ?? "") { credential = nil }
        startOrDefer(request)
    }

    private func authenticationAnswered(_ answer: AuthenticationAnswer, method: String,
                                        request: DownloadStateMachine.Request) {
        guard !machine.isFinished, running != nil else { return }
        switch answer {
        case .use(let user, let password):
            let scheme = method == NSURLAuthenticationMethodHTTPDigest ? CurlAuth.digest : CurlAuth.basic
            credential = (user, password, scheme)
            credentialOrigin = primaryURL
            startOrDefer(request)
        case .cancel:
            run(machine.cancel())
        case .decline:
            declinesQuestions = true
            startOrDefer(request)
        }
    }

    /// Basic or Digest, from the `WWW-Authenticate` headers (Digest preferred), or `nil`.
    static func challengeMethod(_ head: ResponseHead) -> String? {
        let schemes = head.fields.filter { $0.name.lowercased() == "www-authenticate" }
            .map { $0.value.prefix { $0 != " " }.lowercased() }
        if schemes.contains("digest") { return NSURLAuthenticationMethodHTTPDigest }
        if schemes.contains("basic") { return NSURLAuthenticationMethodHTTPBasic }
        return nil
    }

    /// The `realm` parameter of the first challenge that has one.
    static func realm(_ head: ResponseHead) -> String? {
        for field in head.fields where field.name.lowercased() == "www-authenticate" {
            guard let range = field.value.range(of: "realm=", options: .caseInsensitive) else { continue }
            var rest = field.value[range.upperBound...]
            if rest.first == "\"" {
                rest = rest.dropFirst()
                return String(rest.prefix { $0 != "\"" })
            }
            return String(rest.prefix { $0 != "," && $0 != " " })
        }
        return nil
    }
}
