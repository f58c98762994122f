import Foundation

/// The `Link` header fields of a response (RFC 8288), read for Metalink/HTTP (RFC 6249):
/// `Link: <http://mirror/file>; rel=duplicate; pri=1; geo=de`.
struct LinkHeader: Equatable, Sendable {
    /// The target as written (resolved against the response's URL by the caller).
    var target: String
    /// The link relation types, lowercased (`rel="duplicate describedby"` gives two).
    var relations: [String]
    /// The other parameters, names lowercased, quotes removed.
    var parameters: [String: String]

    /// The most links read from one response; the rest are ignored.
    static let maximumLinks = 64

    /// Every well-formed link in `values` (each a `Link` field value); malformed ones are skipped.
    static func parse(_ values: [String]) -> [LinkHeader] {
        var links: [LinkHeader] = []
        for value in values {
            for part in splitOutsideBrackets(value, separator: ",") {
                guard links.count < maximumLinks else { return links }
                if let link = parseOne(part) { links.append(link) }
            }
        }
        return links
    }

    private static func parseOne(_ text: Substring) -> LinkHeader? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("<"), let close = trimmed.firstIndex(of: ">") else { return nil }
        let target = String(trimmed[trimmed.index(after: trimmed.startIndex)..<close])
        guard !target.isEmpty, !target.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7f }) else { return nil }
        var relations: [String] = []
        var parameters: [String: String] = [:]
        for parameter in splitOutsideBrackets(trimmed[trimmed.index(after: close)...], separator: ";") {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard let rawName = pair.first else { continue }
            let name = rawName.trimmingCharacters(in: .whitespaces).lowercased()
            guard !name.isEmpty else { continue }
            var value = pair.count > 1 ? pair[1].trimmingCharacters(in: .whitespaces) : ""
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            if name == "rel" {
                relations += value.lowercased().split(separator: " ").map(String.init)
            } else if parameters[name] == nil {
                parameters[name] = value
            }
        }
        return LinkHeader(target: target, relations: relations, parameters: parameters)
    }

    /// Splits at `separator` where it is outside `<…>` and `"…"`.
    private static func splitOutsideBrackets(_ text: Substring, separator: Character) -> [Substring] {
        var parts: [Substring] = []
        var start = text.startIndex
        var inBrackets = false
        var inQuotes = false
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            switch character {
            case "<" where !inQuotes: inBrackets = true
            case ">" where !inQuotes: inBrackets = false
            case "\"" where !inBrackets: inQuotes.toggle()
            case separator where !inBrackets && !inQuotes:
                parts.append(text[start..<index])
                start = text.index(after: index)
            default: break
            }
            index = text.index(after: index)
        }
        parts.append(text[start...])
        return parts.filter { !$0.allSatisfy(\.isWhitespace) }
    }

    private static func splitOutsideBrackets(_ text: String, separator: Character) -> [Substring] {
        splitOutsideBrackets(Substring(text), separator: separator)
    }
}

extension LinkHeader {
    /// Mirrors a response names (RFC 6249 `rel=duplicate`), resolved against `base`, http(s)
    /// only, by `pri` (1 first; none last), then as listed; at most `limit`.
    static func duplicates(in fields: [(name: String, value: String)], base: String?, limit: Int = 16) -> [String] {
        let links = parse(fields.filter { $0.name.lowercased() == "link" }.map(\.value))
        let baseURL = base.flatMap(URL.init(string:))
        var found: [(priority: Int, order: Int, url: String)] = []
        for (order, link) in links.enumerated() where link.relations.contains("duplicate") {
            guard let url = URL(string: link.target, relativeTo: baseURL)?.absoluteURL,
                  let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else { continue }
            let priority = link.parameters["pri"].flatMap { Int($0) }.map { max(1, min($0, 999_999)) } ?? Int.max
            found.append((priority, order, url.absoluteString))
        }
        var seen = Set<String>()
        return found.sorted { ($0.priority, $0.order) < ($1.priority, $1.order) }.map(\.url)
            .filter { seen.insert($0).inserted }.prefix(limit).map { $0 }
    }
}

extension LinkHeader {
    /// The media type of a Metalink 4 document (RFC 5854 §7).
    static let metalinkType = "application/metalink4+xml"

    /// The first metalink a response names (RFC 6249 §5: `rel=describedby;
    /// type="application/metalink4+xml"`), resolved against `base`; http(s) only.
    static func describedBy(in fields: [(name: String, value: String)], base: String?) -> String? {
        let links = parse(fields.filter { $0.name.lowercased() == "link" }.map(\.value))
        let baseURL = base.flatMap(URL.init(string:))
        for link in links where link.relations.contains("describedby")
            && link.parameters["type"]?.lowercased() == metalinkType {
            guard let url = URL(string: link.target, relativeTo: baseURL)?.absoluteURL,
                  let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else { continue }
            return url.absoluteString
        }
        return nil
    }
}
