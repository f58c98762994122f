import Foundation
import RawStructuredFieldValues

/// Where the digest a download was checked against came from.
public enum ChecksumSource: String, Sendable, Equatable {
    /// Given by the caller (`expectedSHA256`, `--sha256`, `--checksum`, `--checksum-file`).
    case caller
    /// The server's `Repr-Digest` header (RFC 9530).
    case reprDigest = "Repr-Digest"
    /// The server's `Digest` header (RFC 3230).
    case digest = "Digest"
    /// The metalink the download was made from, or the one its server named (`Link: rel=describedby`):
    /// its SHA-256, else its SHA-512.
    case metalink
}

/// A SHA-256 digest: 32 bytes, read from the forms people and servers write it in.
package struct SHA256Digest: Equatable, Sendable {
    let bytes: [UInt8]

    package var hex: String { bytes.hexString }

    init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// Accepts 64 hex digits, aria2's `sha-256=HEX`, or Subresource Integrity's `sha256-BASE64`.
    package init?(expected text: String) {
        let value = text.trimmingCharacters(in: .whitespaces)
        let lower = value.lowercased()
        if lower.hasPrefix("sha-256=") {
            self.init(hex: String(value.dropFirst("sha-256=".count)))
        } else if lower.hasPrefix("sha256-") {
            guard let data = Data(base64Encoded: String(value.dropFirst("sha256-".count))) else { return nil }
            self.init(bytes: Array(data))
        } else {
            self.init(hex: value)
        }
    }

    init?(hex: String) {
        let digits = Array(hex.lowercased().utf8)
        guard digits.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for index in stride(from: 0, to: 64, by: 2) {
            guard let high = Self.nibble(digits[index]), let low = Self.nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        self.bytes = bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    /// The server's digest of the whole file: `Repr-Digest: sha-256=:BASE64:` (a structured
    /// dictionary), else `Digest: SHA-256=BASE64`. `Content-Digest` describes only the bytes
    /// of one response, so it is not used.
    static func fromServer(_ fields: [(name: String, value: String)]) -> (SHA256Digest, ChecksumSource)? {
        for field in fields where field.name.lowercased() == "repr-digest" {
            var parser = StructuredFieldValueParser(Array(field.value.utf8))
            guard let dictionary = try? parser.parseDictionaryFieldValue() else { continue }
            for (key, member) in dictionary where key == "sha-256" {
                if case .item(let item) = member, case .undecodedByteSequence(let base64) = item.rfc9651BareItem,
                   let data = Data(base64Encoded: base64), let digest = SHA256Digest(bytes: Array(data)) {
                    return (digest, .reprDigest)
                }
            }
        }
        for field in fields where field.name.lowercased() == "digest" {
            for part in field.value.split(separator: ",") {
                let pair = part.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "sha-256",
                      let data = Data(base64Encoded: pair[1].trimmingCharacters(in: .whitespaces)),
                      let digest = SHA256Digest(bytes: Array(data)) else { continue }
                return (digest, .digest)
            }
        }
        return nil
    }
}
