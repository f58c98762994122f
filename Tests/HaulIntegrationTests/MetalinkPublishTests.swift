import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    @Suite("haul metalink")
    struct MetalinkPublishTests {
        @Test("Publish then parse: size, SHA-256, piece hashes and URLs of the file on disk")
        func roundTrip() throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let content = GeneratedContent(size: (3 << 20) + 5, seed: 901)
            let path = scratch.file("artifact.bin").path
            try Data(content.bytes(0..<content.size)).write(to: URL(fileURLWithPath: path))
            let result = try runHaul(["metalink", path, "--url", "http://a.example/artifact.bin", "https://b.example/x",
                                      "--location", "de", "--piece-size", "1M"])
            #expect(result.status == 0, "stderr: \(result.stderr)")
            let data = try Data(contentsOf: URL(fileURLWithPath: path + ".meta4"))
            let metalink = try Metalink(data: data)
            let file = try #require(metalink.files.first)
            #expect(file.name == "artifact.bin")
            #expect(file.size == content.size)
            #expect(file.strongHash?.hex == content.sha256)
            let pieces = try #require(file.pieces)
            #expect(pieces.count == 4 && pieces.length == 1 << 20)
            let bytes = content.bytes(0..<content.size)
            for index in 0..<pieces.count {
                let lower = index << 20
                var hash = SHA256()
                hash.update(bytes[lower..<min(bytes.count, lower + (1 << 20))])
                let digest = hash.finalize()
                #expect(Array(pieces.digest(index)) == digest, "piece \(index)")
            }
            #expect(file.sources.map(\.url.absoluteString) == ["http://a.example/artifact.bin", "https://b.example/x"])
            #expect(file.sources.map(\.priority) == [1, 2])
            #expect(file.sources.map(\.location) == ["de", nil])
            // Not replaced without --force; replaced with it.
            let again = try runHaul(["metalink", path, "--url", "http://c.example/a"])
            #expect(again.status != 0 && again.stderr.contains("exists"))
            #expect(try Data(contentsOf: URL(fileURLWithPath: path + ".meta4")) == data)
            let forced = try runHaul(["metalink", path, "--url", "http://c.example/a", "--force"])
            #expect(forced.status == 0)
            #expect(try Metalink(data: Data(contentsOf: URL(fileURLWithPath: path + ".meta4"))).files[0].sources.count == 1)
        }

        @Test("A symbolic link at the output is not written through")
        func linkAtOutput() throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let path = scratch.file("a.bin").path
            try Data("hello".utf8).write(to: URL(fileURLWithPath: path))
            let victim = scratch.file("victim")
            try Data("keep".utf8).write(to: victim)
            try FileManager.default.createSymbolicLink(atPath: scratch.file("out.meta4").path, withDestinationPath: victim.path)
            let result = try runHaul(["metalink", path, "--url", "http://a.example/a", "-o", scratch.file("out.meta4").path])
            #expect(result.status != 0)
            #expect(try Data(contentsOf: victim) == Data("keep".utf8))
        }
    }
}
