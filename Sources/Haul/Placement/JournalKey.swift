import COpenSSL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The per-user secret that signs journals (HMAC-SHA-256), so a journal edited by someone who
/// can write the download directory, but cannot read this user's state directory, is not
/// believed: its done ranges could otherwise claim bytes that were never written.
///
/// Kept at `$XDG_STATE_HOME/haul/journal.key` (else `~/.local/state/haul/journal.key`), 32
/// random bytes, mode 0600 in a 0700 directory, made once and never replaced.
enum JournalKey {
    /// The key, or `nil` when no state directory can be used (journals are then unsigned).
    static let current: [UInt8]? = load()

    /// `hmac-sha256 HEX` of `data` under `key`.
    static func signature(of data: Data, key: [UInt8]) -> String {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        data.withUnsafeBytes { bytes in
            _ = HMAC(EVP_sha256(), key, Int32(key.count), bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count,
                     &out, &length)
        }
        return "hmac-sha256 " + out.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }

    private static func load() -> [UInt8]? {
        guard let root = StateDirectory.open() else { return nil }
        return StateDirectory.secret("journal.key", in: root)
    }
}
