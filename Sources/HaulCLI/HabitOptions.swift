import ArgumentParser
import Foundation

/// Spellings and extras people type by habit from curl, wget and aria2.
struct HabitOptions: ParsableArguments {
    @Flag(name: .customShort("O"), help: "Name the file after the URL (what haul does anyway; curl's -O).")
    var remoteName = false

    @Flag(name: .customShort("L"), help: "Follow redirects (haul always does; curl's -L).")
    var location = false

    @Flag(help: "Only ask each URL for its first byte and print the name, size, range support, validators and the server's digest; nothing is written.")
    var dryRun = false

    @Option(help: ArgumentHelp("A shell command to run after each download succeeds, with the file's path as $1 and in HAUL_FILE (aria2's --on-download-complete).",
                               valueName: "command"))
    var onComplete: String?

    @Option(name: [.customLong("overall-limit-rate"), .customLong("max-overall-download-limit")],
            help: ArgumentHelp("One limit for all downloads together, bytes per second (e.g. 4M), shared by those running.",
                               valueName: "size"))
    var overallLimitRate: ByteSize?

    @Flag(name: [.customShort("N"), .customLong("timestamping")],
          help: "Fetch a file again only if the server's Last-Modified is newer than the local file's (replacing it), as wget -N.")
    var timestamping = false

    @Flag(help: "Do not read the config file (~/.config/haul/config: long option names, one per line).")
    var noConfig = false
}

extension HaulCommand.Get {
    /// A URL typed without a scheme is taken as `http://`, as curl does; a local metalink file
    /// (`.meta4` or `.metalink` that exists, or a path starting with `/` or `.`) stays a path.
    static func withScheme(_ text: String) -> String {
        if text.isEmpty || text.contains("://") { return encodingInvalidCharacters(text) }
        if isMetalinkFile(text), text.hasPrefix("/") || text.hasPrefix(".") || FileManager.default.fileExists(atPath: text) {
            return text
        }
        return encodingInvalidCharacters("http://" + text)
    }

    private static let urlCharacters = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#@!$&'()*+,;=".utf8)

    /// The URL with each character a URL cannot hold (a space, `"`, `|`, `{`, non-ASCII, a `%`
    /// not followed by two hex digits) percent-encoded and everything else as typed, as curl
    /// sends it: Foundation, given such a string, encodes it all again, so a `%2F` already in
    /// the query would reach the server as `%252F`, another resource.
    static func encodingInvalidCharacters(_ text: String) -> String {
        let allowed = urlCharacters
        let bytes = Array(text.utf8)
        func isHex(_ byte: UInt8) -> Bool { (0x30...0x39).contains(byte) || (0x41...0x46).contains(byte) || (0x61...0x66).contains(byte) }
        // `[` and `]` belong only around an IPv6 host: in the authority, between `://` and the
        // first `/`, `?` or `#`.
        let separator: [UInt8] = [0x3A, 0x2F, 0x2F]  // "://"
        let schemeEnd = bytes.indices.first { bytes[$0...].starts(with: separator) }.map { $0 + separator.count } ?? 0
        let authorityEnd = bytes[schemeEnd...].firstIndex { $0 == 0x2F || $0 == 0x3F || $0 == 0x23 } ?? bytes.count
        func keeps(_ index: Int) -> Bool {
            let byte = bytes[index]
            return allowed.contains(byte)
                || ((byte == 0x5B || byte == 0x5D) && index >= schemeEnd && index < authorityEnd)
                || (byte == 0x25 && index + 2 < bytes.count && isHex(bytes[index + 1]) && isHex(bytes[index + 2]))
        }
        // Most URLs need nothing: a list of thousands is read without building any of them again.
        guard let first = bytes.indices.first(where: { !keeps($0) }) else { return text }
        let digits = Array("0123456789ABCDEF".utf8)
        var out = Array(bytes[..<first])
        out.reserveCapacity(bytes.count + 16)
        for index in first..<bytes.count {
            if keeps(index) {
                out.append(bytes[index])
            } else {
                out += [0x25, digits[Int(bytes[index] >> 4)], digits[Int(bytes[index] & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Standard input, read once (for `-i -`; `validate()` and `run()` both ask).
enum StandardInput {
    static let data = FileHandle.standardInput.readDataToEndOfFile()
    static let text: String? = String(data: data, encoding: .utf8)
}
