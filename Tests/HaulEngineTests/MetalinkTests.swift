import Foundation
@testable import Haul
import Testing

private let sha256Empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
private let sha512Abc = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    + "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"

/// A metalink document around `body` (the inside of <metalink>).
private func document(_ body: String) -> Data {
    Data("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\(body)</metalink>".utf8)
}

private func file(name: String = "a.bin", size: String? = "10", hashes: String = "<hash type=\"sha-256\">\(sha256Empty)</hash>",
                  pieces: String = "", urls: String = "<url>http://example.com/a.bin</url>") -> String {
    "<file name=\"\(name)\">" + (size.map { "<size>\($0)</size>" } ?? "") + hashes + pieces + urls + "</file>"
}

private func parse(_ body: String) -> Result<Metalink, MetalinkError> {
    do throws(MetalinkError) {
        return .success(try Metalink(data: document(body)))
    } catch {
        return .failure(error)
    }
}

@Suite("Metalink parsing")
struct MetalinkTests {
    @Test("SHA-512 through EVP matches the known answer")
    func sha512() {
        var hash = EVPHash(.sha512)
        Array("abc".utf8).withUnsafeBytes { hash.update($0) }
        #expect(hash.digest().hexString == sha512Abc)
    }

    @Test("A full file: size, hashes, pieces and URLs with priority and location")
    func fullFile() throws {
        let pieces = "<pieces length=\"4\" type=\"sha-256\">" + String(repeating: "<hash>\(sha256Empty)</hash>", count: 3) + "</pieces>"
        let urls = """
            <url priority="2" location="de">http://b.example/a.bin</url>
            <url priority="1" location="US">https://a.example/a.bin</url>
            <url>ftp://c.example/a.bin</url>
            <url location="fr">http://d.example/a.bin</url>
            """
        let hashes = "<hash type=\"md5\">d41d8cd98f00b204e9800998ecf8427e</hash><hash type=\"SHA-512\">\(sha512Abc)</hash>"
            + "<hash type=\"sha-256\">\(sha256Empty.uppercased())</hash>"
        let metalink = try parse(file(name: "dir/a.bin", hashes: hashes, pieces: pieces, urls: urls)).get()
        let parsed = try #require(metalink.files.first)
        #expect(parsed.name == "dir/a.bin")
        #expect(parsed.size == 10)
        #expect(parsed.hashes.map(\.type) == ["md5", "sha-512", "sha-256"])
        #expect(parsed.strongHash?.algorithm == .sha256)
        #expect(parsed.strongHash?.value.hexString == sha256Empty)
        #expect(parsed.pieces?.count == 3)
        #expect(parsed.pieces?.length == 4)
        // ftp is skipped; the rest keep their attributes.
        #expect(parsed.sources.map(\.url.host) == ["b.example", "a.example", "d.example"])
        #expect(parsed.orderedSources().map(\.url.host) == ["a.example", "b.example", "d.example"])
        #expect(parsed.orderedSources(preferring: "FR").map(\.url.host) == ["d.example", "a.example", "b.example"])
        #expect(parsed.orderedSources(preferring: "de").map(\.url.host) == ["b.example", "a.example", "d.example"])
    }

    @Test("A SHA-512-only file is accepted and verified with SHA-512")
    func sha512Only() throws {
        let metalink = try parse(file(hashes: "<hash type=\"sha-512\">\(sha512Abc)</hash>")).get()
        #expect(metalink.files[0].strongHash?.algorithm == .sha512)
    }

    @Test("Writing then parsing gives the same metalink, with hostile characters escaped")
    func roundTrip() throws {
        let digests = Array(repeating: UInt8(7), count: 64)
        let original = try Metalink(files: [
            .init(name: "we<ird>&\"'name.bin", size: 7, hashes: [.init(type: "sha-256", value: Array(repeating: 1, count: 32))],
                  pieces: .init(algorithm: .sha256, length: 4, digests: digests),
                  sources: [.init(url: URL(string: "http://a.example/x?a=1&b=<2>")!, priority: 3, location: "nl"),
                            .init(url: URL(string: "https://b.example/x")!)]),
        ])
        let again = try Metalink(data: original.xmlData())
        #expect(again == original)
    }

    @Test("Hostile and malformed metalinks are refused with the reason", arguments: [
        (file(name: "../evil"), "'..'"),
        (file(name: "a/../../evil"), "'..'"),
        (file(name: "/etc/passwd"), "absolute"),
        (file(name: "a//b"), "empty path component"),
        (file(name: "./a"), "'.'"),
        (file(name: ""), "empty"),
        (file(name: "a&#10;b"), "control character"),
        (file(name: "a&#127;b"), "control character"),
        (file(name: "a\\..\\b"), "backslash"),
        (file(name: ".v.bin.haul-part"), "partial file's or journal's name"),
        (file(name: "d/.v.bin.haul-journal"), "partial file's or journal's name"),
        (file(name: ".ssh/authorized_keys"), "hidden"),
        (file(name: ".bashrc"), "hidden"),
        (file(name: "a/.config/autostart/x.desktop"), "hidden"),
        (file(hashes: "<hash type=\"sha-256\">zz</hash>"), "not hexadecimal"),
        (file(hashes: "<hash type=\"sha-256\">abcd</hash>"), "expected 64"),
        (file(hashes: "<hash type=\"md5\">d41d8cd98f00b204e9800998ecf8427e</hash>"), "no sha-256 or sha-512"),
        (file(hashes: "<hash type=\"sha3-256\">\(sha256Empty)</hash>"), "no sha-256 or sha-512"),
        (file(hashes: ""), "no sha-256 or sha-512"),
        (file(size: "-1"), "not a byte count"),
        (file(size: "ten"), "not a byte count"),
        (file(pieces: "<pieces length=\"4\" type=\"sha-256\"><hash>\(sha256Empty)</hash></pieces>"), "make 3"),
        (file(size: "1000000000000", pieces: "<pieces length=\"1\" type=\"sha-256\"><hash>\(sha256Empty)</hash></pieces>"), "more than"),
        (file(pieces: "<pieces length=\"0\" type=\"sha-256\"></pieces>"), "positive"),
        (file(pieces: "<pieces length=\"4\" type=\"sha-256\"><hash>xyz</hash></pieces>"), "piece 0"),
        (file(size: nil, pieces: "<pieces length=\"4\" type=\"sha-256\"><hash>\(sha256Empty)</hash></pieces>"), "need the file's <size>"),
        (file(urls: "<url>ftp://example.com/a</url>"), "no http or https URL"),
        (file(urls: "<url priority=\"0\">http://example.com/a</url>"), "priority"),
        (file(urls: "<url location=\"usa\">http://example.com/a</url>"), "location"),
        (file() + file(), "twice"),
        ("", "no <file>"),
        ("<file name=\"a\">", "not well-formed"),
    ])
    func refused(body: String, reason: String) {
        guard case .failure(let error) = parse(body) else {
            Issue.record("accepted: \(body)")
            return
        }
        #expect(error.description.contains(reason), "\(error)")
    }

    @Test("A DTD, internal or external entities are refused before anything is expanded or fetched")
    func entities() {
        let laughs = """
            <?xml version="1.0"?>
            <!DOCTYPE metalink [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
            <metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="&b;"><size>1</size></file></metalink>
            """
        let external = """
            <?xml version="1.0"?>
            <!DOCTYPE metalink [<!ENTITY x SYSTEM "file:///etc/passwd">]>
            <metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="&x;"></file></metalink>
            """
        for text in [laughs, external] {
            #expect(throws: MetalinkError.documentTypeDeclared) { try Metalink(data: Data(text.utf8)) }
        }
    }

    @Test("Not Metalink 4: another root, Metalink 3, no namespace, too large")
    func notMetalink() {
        #expect(throws: MetalinkError.self) { try Metalink(data: Data("<html/>".utf8)) }
        let v3 = "<metalink xmlns=\"http://www.metalinker.org/\" version=\"3.0\"><files/></metalink>"
        do {
            _ = try Metalink(data: Data(v3.utf8))
            Issue.record("Metalink 3 accepted")
        } catch {
            #expect("\(error)".contains("Metalink 3"))
        }
        #expect(throws: MetalinkError.self) { try Metalink(data: Data("<metalink><file name=\"a\"/></metalink>".utf8)) }
        let huge = Data(count: Metalink.maximumDocumentSize + 1)
        #expect(throws: MetalinkError.tooLarge(bytes: huge.count, limit: Metalink.maximumDocumentSize)) {
            try Metalink(data: huge)
        }
    }

    @Test("Piece hashes are counted while parsing: a huge list stops at the limit")
    func pieceLimit() {
        let many = String(repeating: "<hash>\(sha256Empty)</hash>", count: Metalink.maximumPieces + 1)
        let body = file(size: "100", pieces: "<pieces length=\"1\" type=\"sha-256\">\(many)</pieces>")
        guard case .failure(let error) = parse(body) else {
            Issue.record("accepted")
            return
        }
        #expect(error == .tooMany(what: "pieces", limit: Metalink.maximumPieces))
    }
}

extension MetalinkTests {
    @Test("A truncated document is malformed, wherever it is cut")
    func truncated() throws {
        let whole = document(file(urls: "<url priority=\"1\">http://example.com/a.bin</url>"))
        #expect(throws: Never.self) { try Metalink(data: whole) }
        for cut in stride(from: 1, to: whole.count - 1, by: 7) {
            #expect(throws: MetalinkError.self) { try Metalink(data: whole.prefix(cut)) }
        }
    }
}
