import Foundation
@testable import Haul
import Testing

private let emptyHex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
private let emptyBase64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

@Suite("SHA-256 digests")
struct SHA256DigestTests {
    @Test("EVP SHA-256 of known inputs")
    func knownAnswers() {
        var empty = SHA256()
        empty.update([UInt8]())
        #expect(empty.finalizeHex() == emptyHex)
        var abc = SHA256()
        abc.update(Array("abc".utf8))
        #expect(abc.finalizeHex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("Expected digests in each accepted form", arguments: [
        emptyHex, emptyHex.uppercased(), "sha-256=\(emptyHex)", "SHA-256=\(emptyHex)", "sha256-\(emptyBase64)",
        "  \(emptyHex) ",
    ])
    func accepted(text: String) {
        #expect(SHA256Digest(expected: text)?.hex == emptyHex)
    }

    @Test("Malformed expected digests are refused", arguments: [
        "", "abc", String(emptyHex.dropLast()), emptyHex + "0", "sha-256=xyz", "sha256-!!!", "md5=\(emptyHex)",
        "sha256-\(Data(count: 31).base64EncodedString())", String(repeating: "g", count: 64),
    ])
    func refused(text: String) {
        #expect(SHA256Digest(expected: text) == nil)
    }

    @Test("The server's digest: Repr-Digest first, then Digest; Content-Digest is not used")
    func serverHeaders() {
        let repr = SHA256Digest.fromServer([("Repr-Digest", "sha-512=:AAAA:, sha-256=:\(emptyBase64):")])
        #expect(repr?.0.hex == emptyHex && repr?.1 == .reprDigest)
        let legacy = SHA256Digest.fromServer([("Digest", "MD5=xyz, SHA-256=\(emptyBase64)")])
        #expect(legacy?.0.hex == emptyHex && legacy?.1 == .digest)
        let both = SHA256Digest.fromServer([("Digest", "SHA-256=\(Data(count: 32).base64EncodedString())"),
                                            ("Repr-Digest", "sha-256=:\(emptyBase64):")])
        #expect(both?.1 == .reprDigest)
        #expect(SHA256Digest.fromServer([("Content-Digest", "sha-256=:\(emptyBase64):")]) == nil)
        #expect(SHA256Digest.fromServer([("Repr-Digest", "sha-256=not-a-byte-sequence")]) == nil)
        #expect(SHA256Digest.fromServer([("Repr-Digest", "sha-256=:AAAA:")]) == nil)
    }
}
