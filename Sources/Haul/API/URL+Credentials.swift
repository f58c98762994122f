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
