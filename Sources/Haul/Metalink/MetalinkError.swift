/// Why a metalink cannot be used, each with a message a person can act on.
///
/// Nothing is downloaded or written for a metalink that fails to parse or validate.
public enum MetalinkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not well-formed XML (`line` is where the parser stopped).
    case malformedXML(line: Int, reason: String)
    /// The document is XML but not a Metalink 4 document (RFC 5854).
    case notMetalink(reason: String)
    /// The document declares a DTD or entities; a metalink needs neither, and none are expanded
    /// or fetched.
    case documentTypeDeclared
    /// The document is larger than Haul reads (`limit` bytes).
    case tooLarge(bytes: Int, limit: Int)
    /// The document describes no `<file>`.
    case noFiles
    /// The document has more of something than Haul accepts (files, URLs, hashes, text).
    case tooMany(what: String, limit: Int)
    /// A `<file>` name that could leave the output directory or that a file system cannot hold.
    case unsafeName(String, reason: String)
    /// Two `<file>` elements have the same name.
    case duplicateName(String)
    /// A `<size>` that is not a non-negative integer.
    case invalidSize(file: String, text: String)
    /// A `<hash>` whose value is not hexadecimal of the right length for its type.
    case invalidHash(file: String, type: String, reason: String)
    /// The file has no SHA-256 or SHA-512 (only weaker or unknown hash types, or none): it
    /// could not be verified.
    case noStrongHash(file: String, types: [String])
    /// `<pieces>` with a missing or invalid `length`, or without a `<size>` to divide.
    case invalidPieces(file: String, reason: String)
    /// The number of piece hashes is not what `size` and the piece length make.
    case pieceCountMismatch(file: String, expected: Int64, found: Int)
    /// The file lists no http or https URL.
    case noUsableURL(file: String)
    /// A `<url>` that is not an absolute URL, or whose priority or location is malformed.
    case invalidURL(file: String, text: String)

    /// What is wrong and what to do about it, in one sentence.
    public var description: String {
        switch self {
        case .malformedXML(let line, let reason):
            return "the metalink is not well-formed XML (line \(line): \(reason)); check that the file is a complete .meta4"
        case .notMetalink(let reason):
            return "this is not a Metalink 4 document (\(reason)); Haul reads RFC 5854 .meta4 files "
                + "(namespace urn:ietf:params:xml:ns:metalink)"
        case .documentTypeDeclared:
            return "the metalink declares a DTD or entities, which Metalink 4 never needs; it was refused so that "
                + "nothing is expanded or fetched — ask the publisher for a plain .meta4"
        case .tooLarge(let bytes, let limit):
            return "the metalink is \(bytes) bytes, more than the \(limit) Haul reads; use a larger piece length"
        case .noFiles:
            return "the metalink describes no <file>; there is nothing to download"
        case .tooMany(let what, let limit):
            return "the metalink has more than \(limit) \(what); it was refused to bound memory"
        case .unsafeName(let name, let reason):
            return "the metalink's file name '\(Self.printable(name))' is unsafe (\(reason)); names must be relative paths "
                + "that stay inside the output directory — nothing was written"
        case .duplicateName(let name):
            return "the metalink names '\(Self.printable(name))' twice; each file needs its own name"
        case .invalidSize(let file, let text):
            return "the metalink's size of '\(Self.printable(file))' is '\(Self.printable(text))', not a byte count"
        case .invalidHash(let file, let type, let reason):
            return "the metalink's \(type) hash of '\(Self.printable(file))' is invalid (\(reason))"
        case .noStrongHash(let file, let types):
            let listed = types.isEmpty ? "none" : types.joined(separator: ", ")
            return "the metalink gives '\(Self.printable(file))' no sha-256 or sha-512 hash (it has: \(listed)), so the "
                + "download could not be verified; ask the publisher for a metalink with sha-256"
        case .invalidPieces(let file, let reason):
            return "the metalink's pieces of '\(Self.printable(file))' are invalid (\(reason))"
        case .pieceCountMismatch(let file, let expected, let found):
            return "the metalink lists \(found) piece hashes for '\(Self.printable(file))' but its size and piece length "
                + "make \(expected); the metalink is damaged"
        case .noUsableURL(let file):
            return "the metalink gives '\(Self.printable(file))' no http or https URL to download from"
        case .invalidURL(let file, let text):
            return "the metalink's URL '\(Self.printable(text))' for '\(Self.printable(file))' is invalid"
        }
    }

    /// `text` with control characters shown as `?`, so a hostile name cannot drive a terminal.
    static func printable(_ text: String) -> String {
        let shown = String(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? "?" : Character($0) })
        return shown.count > 200 ? String(shown.prefix(200)) + "…" : shown
    }
}
