import COpenSSL

/// A hash function Haul verifies downloads with: the strong ones OpenSSL's EVP interface has.
///
/// Weaker functions a metalink may list (MD5, SHA-1) are recorded but never used as a check.
public enum HashAlgorithm: String, Sendable, Equatable, CaseIterable {
    /// SHA-256 (32-byte digests); the metalink name is `sha-256`.
    case sha256 = "sha-256"
    /// SHA-512 (64-byte digests); the metalink name is `sha-512`.
    case sha512 = "sha-512"

    /// The digest length in bytes.
    public var digestLength: Int {
        switch self {
        case .sha256: return 32
        case .sha512: return 64
        }
    }

    /// OpenSSL's description of the function.
    var evp: OpaquePointer? {
        switch self {
        case .sha256: return EVP_sha256()
        case .sha512: return EVP_sha512()
        }
    }
}

/// Incremental hashing with any `HashAlgorithm` through OpenSSL's EVP interface: a non-copyable
/// owner of one `EVP_MD_CTX`, like `SHA256`.
struct EVPHash: ~Copyable {
    private let context: OpaquePointer
    let algorithm: HashAlgorithm

    init(_ algorithm: HashAlgorithm) {
        guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, algorithm.evp, nil) == 1 else {
            fatalError("OpenSSL could not create a \(algorithm.rawValue) context (out of memory?)")
        }
        self.context = context
        self.algorithm = algorithm
    }

    deinit { EVP_MD_CTX_free(context) }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    /// Starts over for the next input, keeping the context (no allocation per piece).
    mutating func reset() {
        EVP_DigestInit_ex(context, algorithm.evp, nil)
    }

    /// The digest of what was fed since the last reset; the context can be reset and reused.
    mutating func digest() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        digest.withUnsafeMutableBufferPointer { _ = EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return Array(digest.prefix(Int(length)))
    }

    /// Writes the digest into `out` (at least `algorithm.digestLength` bytes) without allocating.
    mutating func digest(into out: UnsafeMutableRawBufferPointer) {
        var length: UInt32 = 0
        _ = EVP_DigestFinal_ex(context, out.baseAddress?.assumingMemoryBound(to: UInt8.self), &length)
    }
}

/// Reads hexadecimal digits into bytes; `nil` for an odd count or a character that is not hex.
func bytes(fromHex text: some StringProtocol) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    var index = 0
    while index < digits.count {
        guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
        out.append(high << 4 | low)
        index += 2
    }
    return out
}
