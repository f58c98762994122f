import Foundation

extension URL {
    /// The URL without its user name and password (`http://user:secret@host/` → `http://host/`),
    /// for anything written to disk or shown: journals, logs, progress and error lines.
    package var withoutCredentials: URL {
        guard user != nil || password != nil,
              var components = URLComponents(url: self, resolvingAgainstBaseURL: false) else { return self }
        components.user = nil
        components.password = nil
        return components.url ?? self
    }

    /// `Authorization: Basic …` for the user name and password in the URL, if it has them.
    package var basicAuthorization: String? {
        guard let user = user(percentEncoded: false) else { return nil }
        let pair = "\(user):\(password(percentEncoded: false) ?? "")"
        return "Basic " + Data(pair.utf8).base64EncodedString()
    }
}

/// `text` with the user information of a URL-like string (`scheme://user:secret@host…`) removed,
/// for echoing what a person typed in an error message.
package func redactingCredentials(_ text: String) -> String {
    guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].firstIndex(of: "@") else { return text }
    let authorityEnd = text[scheme.upperBound...].firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? text.endIndex
    guard at < authorityEnd else { return text }
    return String(text[..<scheme.upperBound]) + String(text[text.index(after: at)...])
}
