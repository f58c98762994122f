import Foundation

/// File names for downloads: from the URL path or a `Content-Disposition` header, made safe.
package enum OutputName {
    /// The last path component of `url`, percent-decoded and made safe; `index.html` when the
    /// path names no file.
    package static func from(url: URL) -> String {
        sanitize(url.lastPathComponent) ?? "index.html"
    }

    /// The `;`-separated parts of a header value; a `;` inside a quoted string (RFC 9110
    /// §5.6.4, with `\` escapes) belongs to the string: `filename="a;b.txt"` is one part.
    static func parameters(_ value: String) -> [Substring] {
        var parts: [Substring] = []
        var start = value.startIndex
        var quoted = false
        var escaped = false
        for index in value.indices {
            let character = value[index]
            if escaped {
                escaped = false
            } else if quoted, character == "\\" {
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
            } else if character == ";", !quoted {
                parts.append(value[start..<index])
                start = value.index(after: index)
            }
        }
        parts.append(value[start...])
        return parts
    }

    /// The file name a `Content-Disposition` header proposes (`filename*=UTF-8''…` preferred over
    /// `filename=…`), made safe, or `nil`.
    package static func from(contentDisposition value: String) -> String? {
        var plain: String?
        var extended: String?
        for part in parameters(value) {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            switch pair[0].lowercased() {
            case "filename*":
                // RFC 8187: charset'language'percent-encoded
                let pieces = pair[1].split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                if pieces.count == 3, pieces[0].lowercased() == "utf-8" {
                    extended = String(pieces[2]).removingPercentEncoding
                }
            case "filename":
                var name = pair[1]
                if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 {
                    name = String(name.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"")
                }
                plain = name
            default:
                continue
            }
        }
        return (extended ?? plain).flatMap(sanitize)
    }

    /// `url` itself, or `NAME.1.EXT`, `NAME.2.EXT`, … when another download of the run took it.
    package static func distinct(_ url: URL, taken: Set<String>) -> URL {
        guard taken.contains(url.path) else { return url }
        let stem = url.deletingPathExtension().lastPathComponent
        let suffix = url.pathExtension.isEmpty ? "" : "." + url.pathExtension
        for index in 1... {
            let candidate = url.deletingLastPathComponent().appendingPathComponent("\(stem).\(index)\(suffix)")
            if !taken.contains(candidate.path) { return candidate }
        }
        return url
    }

    /// A name that stays in its directory: the last component after `/` or `\`, without
    /// control characters or leading dots (a server must not pick `.bashrc`), at most 255 bytes.
    /// `nil` when nothing is left.
    package static func sanitize(_ raw: String) -> String? {
        let last = raw.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        var name = String(last.unicodeScalars.filter { !CharacterSet.controlCharacters.contains($0) })
            .trimmingCharacters(in: .whitespaces)
        // A server must not pick a hidden name (`.bashrc`, `.ssh`): leading dots go.
        while name.hasPrefix(".") { name.removeFirst() }
        while name.utf8.count > 255 { name.removeLast() }
        guard !name.isEmpty, name != ".", name != ".." else { return nil }
        return name
    }
}
