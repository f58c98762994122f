import Foundation
@testable import Haul
import Testing

private func sample() -> ResumeData {
    ResumeData(url: URL(string: "https://example.org/big.iso")!, finalURL: nil,
               headers: [["X-Token", "abc"]], etag: "\"v1\"", lastModified: "Tue, 01 Jan 2030 00:00:00 GMT",
               length: 10_000, tempFile: .init(path: "/tmp/x.part", device: 2049, inode: 77, size: 10_000),
               doneRanges: [0..<4_000, 6_000..<7_000], syncedRanges: [0..<2_000], bootID: "boot-a",
               destination: "/data/big.iso", expectedSHA256: nil)
}

/// Re-signs a JSON payload so the checksum passes and the field checks are reached.
private func blob(json: String, version: Int = 1) -> Data {
    var hash = SHA256()
    hash.update(Array(json.utf8))
    return Data("haul-resume \(version)\n\(json)\nsha256 \(hash.finalizeHex())\n".utf8)
}

private func payload(_ overrides: [String: String] = [:]) -> String {
    var fields: [String: String] = [
        "url": "\"https://example.org/f\"", "method": "\"GET\"", "headers": "[]", "length": "100",
        "tempFile": "{\"path\":\"/tmp/f\",\"device\":1,\"inode\":2,\"size\":100}",
        "doneRanges": "[[0,10]]", "syncedRanges": "[]",
    ]
    for (key, value) in overrides { fields[key] = value }
    return "{" + fields.sorted { $0.key < $1.key }.filter { $0.value != "-" }
        .map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
}

private func reason(_ data: Data) -> String? {
    do {
        _ = try ResumeData(data)
        return nil
    } catch {
        guard case .resumeDataInvalid(let reason) = error else { return "wrong error \(error)" }
        return reason
    }
}

@Suite("ResumeData")
struct ResumeDataTests {
    @Test("Round trip keeps every field")
    func roundTrip() throws {
        let original = sample()
        let decoded = try ResumeData(original.encoded())
        #expect(decoded == original)
        #expect(decoded.bytesDone == 5_000)
        #expect(decoded.contiguousPrefix == 4_000)
        #expect(String(decoding: original.encoded(), as: UTF8.self).hasPrefix("haul-resume 1\n{"))
    }

    @Test("After a reboot only synced ranges are trusted")
    func bootID() {
        let data = sample()
        #expect(data.trustedRanges(currentBootID: "boot-a") == [0..<4_000, 6_000..<7_000])
        #expect(data.trustedRanges(currentBootID: "boot-b") == [0..<2_000])
        #expect(data.trustedRanges(currentBootID: nil) == [0..<2_000])
    }

    @Test("Damaged blobs fail with a reason", arguments: [
        (Data(), "it is empty"),
        (Data("hello".utf8), "it is truncated (no header line)"),
        (Data("zip-resume 1\n{}\n".utf8), "it is not Haul resume data"),
        (Data("haul-resume 9\n{}\nsha256 x\n".utf8), "it was written by a newer Haul (format 9; this one reads up to 1)"),
        (Data("haul-resume 0\n{}\n".utf8), "its version '0' is not valid"),
        (Data("haul-resume 1\n{\"a\":1}".utf8), "it is truncated (no checksum line)"),
        (Data("haul-resume 1\n{}\nsha256 00\n".utf8), "it is truncated or corrupt (bad checksum line)"),
    ] as [(Data, String)])
    func damaged(data: Data, expected: String) {
        #expect(reason(data) == expected)
    }

    @Test("A flipped byte is caught by the checksum")
    func flippedByte() {
        var data = sample().encoded()
        data[30] ^= 0x01
        #expect(reason(data) == "it is corrupt (checksum mismatch)")
    }

    @Test("Fields that make no sense are refused even with a valid checksum", arguments: [
        (["doneRanges": "[[0,10],[5,20]]"], "the done ranges overlap or are out of order at 5"),
        (["doneRanges": "[[20,30],[0,10]]"], "the done ranges overlap or are out of order at 0"),
        (["doneRanges": "[[0,101]]"], "a done range ends at 101, past the length 100"),
        (["doneRanges": "[[5,5]]"], "a done range [5, 5] is malformed"),
        (["doneRanges": "[[-1,5]]"], "a done range [-1, 5] is malformed"),
        (["doneRanges": "[[1,2,3]]"], "a done range [1, 2, 3] is malformed"),
        (["syncedRanges": "[[0,20]]"], "a synced range 0-20 is not among the done ranges"),
        (["length": "-1"], "its length is negative"),
        (["url": "\"file:///etc/passwd\""], "its URL is not an http(s) URL"),
        (["method": "\"POST\""], "its method POST is not GET"),
        (["tempFile": "{\"path\":\"rel\",\"device\":1,\"inode\":2,\"size\":1}"], "its temp file path is not absolute"),
        (["length": "\"ten\""], "it is corrupt (fields missing or of the wrong type)"),
        (["url": "-"], "it is corrupt (fields missing or of the wrong type)"),
        (["expectedSHA256": "\"abc\""], "its expected SHA-256 is not 64 hex digits"),
        (["headers": "[[\"only-name\"]]"], "its headers are malformed"),
    ] as [([String: String], String)])
    func nonsense(overrides: [String: String], expected: String) {
        #expect(reason(blob(json: payload(overrides))) == expected)
    }

    @Test("A valid hand-made payload decodes")
    func handMade() throws {
        let decoded = try ResumeData(blob(json: payload()))
        #expect(decoded.doneRanges == [0..<10])
        #expect(decoded.length == 100)
    }

    /// Bounded randomized fuzzing of the decoder: mutations of a valid blob (flips, cuts,
    /// insertions, and re-signed JSON edits) must decode or throw resumeDataInvalid, never crash.
    @Test("Randomized mutations never crash the decoder")
    func fuzz() {
        var generator = SystemRandomNumberGenerator()
        let valid = [UInt8](sample().encoded())
        let json = String(decoding: valid.split(separator: 0x0A)[1], as: UTF8.self)
        let alphabet = Array("0123456789-[],{}\":abcxyz ".utf8)
        var decoded = 0
        for round in 0..<3_000 {
            var bytes = valid
            switch round % 4 {
            case 0:
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    let index = Int.random(in: 0..<bytes.count, using: &generator)
                    bytes[index] ^= UInt8.random(in: 1...255, using: &generator)
                }
            case 1:
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator)))
            case 2:
                bytes.insert(contentsOf: (0..<Int.random(in: 1...8, using: &generator)).map { _ in
                    UInt8.random(in: 0...255, using: &generator)
                }, at: Int.random(in: 0...bytes.count, using: &generator))
            default:
                var text = Array(json.utf8)
                for _ in 0..<Int.random(in: 1...3, using: &generator) {
                    text[Int.random(in: 0..<text.count, using: &generator)] = alphabet.randomElement(using: &generator)!
                }
                bytes = [UInt8](blob(json: String(decoding: text, as: UTF8.self)))
            }
            do {
                let result = try ResumeData(Data(bytes))
                decoded += 1
                // Whatever decodes is internally consistent.
                #expect(result.doneRanges.allSatisfy { $0.upperBound <= result.length })
            } catch {
                guard case .resumeDataInvalid = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
            }
        }
        #expect(decoded < 3_000)
    }
}

extension ResumeDataTests {
    @Test("A metalink download's sources and verified pieces round-trip; blobs without them still decode")
    func metalinkFields() throws {
        var original = sample()
        original.mirrors = [URL(string: "https://mirror.example/big.iso")!]
        original.pieceLength = 1_000
        original.verifiedPieces = [0, 1, 2, 6]
        let text = String(decoding: original.encoded(), as: UTF8.self)
        #expect(text.contains("\"verifiedPieces\":[[0,3],[6,7]]"))
        #expect(try ResumeData(original.encoded()) == original)
        // Without a metalink, nothing new is written.
        let plain = String(decoding: sample().encoded(), as: UTF8.self)
        #expect(!plain.contains("verifiedPieces") && !plain.contains("pieceLength") && !plain.contains("mirrors"))
        #expect(try ResumeData(blob(json: payload())).verifiedPieces.isEmpty)
    }

    @Test("Malformed metalink fields are refused", arguments: [
        (["pieceLength": "10", "verifiedPieces": "[[0,11]]"], "its verified pieces are malformed"),
        (["pieceLength": "10", "verifiedPieces": "[[3,2]]"], "its verified pieces are malformed"),
        (["pieceLength": "10", "verifiedPieces": "[[0,2],[1,3]]"], "its verified pieces are malformed"),
        (["pieceLength": "0"], "its piece length is not positive"),
        (["verifiedPieces": "[[0,1]]"], "it lists verified pieces without a piece length"),
        (["mirrors": "[\"file:///etc/passwd\"]"], "a mirror is not an http(s) URL"),
    ] as [([String: String], String)])
    func metalinkNonsense(overrides: [String: String], expected: String) {
        #expect(reason(blob(json: payload(overrides))) == expected)
    }
}

extension ResumeDataTests {
    @Test("The server's instance digest round-trips; a malformed one is refused")
    func serverDigest() throws {
        var original = sample()
        original.serverSHA256 = String(repeating: "ab", count: 32)
        original.serverDigestHeader = .reprDigest
        #expect(try ResumeData(original.encoded()) == original)
        #expect(!String(decoding: sample().encoded(), as: UTF8.self).contains("serverSHA256"))
        let hex = "\"\(String(repeating: "0", count: 64))\""
        let malformed: [[String: String]] = [
            ["serverSHA256": hex], ["serverDigestHeader": "\"Repr-Digest\""],
            ["serverSHA256": "\"abc\"", "serverDigestHeader": "\"Repr-Digest\""],
            ["serverSHA256": hex, "serverDigestHeader": "\"caller\""],
            ["serverSHA256": hex, "serverDigestHeader": "\"metalink\""],
        ]
        for overrides in malformed {
            #expect(reason(blob(json: payload(overrides))) == "its server digest is malformed", "\(overrides)")
        }
        let decoded = try ResumeData(blob(json: payload(["serverSHA256": hex, "serverDigestHeader": "\"Digest\""])))
        #expect(decoded.serverDigestHeader == .digest && decoded.serverSHA256 == String(repeating: "0", count: 64))
    }
}

extension ResumeDataTests {
    @Test("Another program's prefix round-trips; one outside the file is refused")
    func adoptedPrefix() throws {
        var original = sample()
        original.adoptedPrefix = 4_000
        #expect(try ResumeData(original.encoded()) == original)
        #expect(!String(decoding: sample().encoded(), as: UTF8.self).contains("adoptedPrefix"))
        for value in ["0", "-5", "101"] {
            #expect(reason(blob(json: payload(["adoptedPrefix": value]))) == "its adopted prefix \(value) is outside the file")
        }
        #expect(try ResumeData(blob(json: payload(["adoptedPrefix": "100"]))).adoptedPrefix == 100)
    }
}
