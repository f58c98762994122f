import Foundation

/// Reads a `sha256sum`-style file (`HEX  name` or `HEX *name` per line) and finds a file's digest.
enum ChecksumFile {
    /// The digest listed for `name` (compared by last path component), or `nil`.
    static func digest(for name: String, in text: String) -> String? {
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.hasPrefix("#"), let space = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) else { continue }
            let hex = String(trimmed[..<space])
            var listed = trimmed[space...].trimmingCharacters(in: .whitespaces)
            if listed.hasPrefix("*") { listed.removeFirst() }
            if (listed as NSString).lastPathComponent == name { return hex }
        }
        return nil
    }
}
