/// A parsed `Content-Range` response header (RFC 9110 §14.4), bytes unit only.
///
/// `bytes 0-99/1000` is a satisfied range; `bytes */1000` is the form a `416` carries.
/// A total of `*` (unknown length) is kept as `nil`.
struct ContentRange: Equatable, Sendable {
    /// First and last byte position (inclusive), or `nil` for the unsatisfied `*/length` form.
    var first: Int64?
    var last: Int64?
    /// Complete length of the representation, or `nil` when the server sent `*`.
    var completeLength: Int64?

    /// The half-open byte range this header describes, when it describes one.
    var range: Range<Int64>? {
        guard let first, let last else { return nil }
        return first..<(last + 1)
    }

    /// Parses a header value; returns `nil` for anything malformed rather than guessing.
    init?(_ value: some StringProtocol) {
        let trimmed = value.trimmingSpaces
        guard trimmed.lowercased().hasPrefix("bytes ") else { return nil }
        let spec = trimmed.dropFirst("bytes ".count).trimmingSpaces
        guard let slash = spec.firstIndex(of: "/") else { return nil }
        let rangePart = spec[..<slash]
        let lengthPart = spec[spec.index(after: slash)...]
        if lengthPart == "*" {
            completeLength = nil
        } else {
            guard let total = Int64(decimal: lengthPart) else { return nil }
            completeLength = total
        }
        if rangePart == "*" {
            guard completeLength != nil else { return nil }
            first = nil
            last = nil
            return
        }
        guard let dash = rangePart.firstIndex(of: "-"),
              let f = Int64(decimal: rangePart[..<dash]),
              let l = Int64(decimal: rangePart[rangePart.index(after: dash)...]),
              f <= l
        else { return nil }
        if let total = completeLength, l >= total { return nil }
        first = f
        last = l
    }

    init(first: Int64?, last: Int64?, completeLength: Int64?) {
        self.first = first
        self.last = last
        self.completeLength = completeLength
    }
}

extension Int64 {
    /// Strict decimal: digits only, no sign, no spaces, no overflow.
    init?(decimal text: some StringProtocol) {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let value = Int64(String(text))
        else { return nil }
        self = value
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs, CR and LF.
    var trimmingSpaces: Substring {
        // "\r\n" is one Character in Swift, so newlines are matched by property.
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0.isNewline }
        let s = Substring(self)
        guard let start = s.firstIndex(where: { !isSpace($0) }),
              let end = s.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return s[start...end]
    }
}
