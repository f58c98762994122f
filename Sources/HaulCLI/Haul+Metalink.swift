import ArgumentParser
import Foundation
import Haul

extension HaulCommand {
    /// `haul metalink FILE --url U…`: publishes a verified description of a file.
    struct MetalinkCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "metalink",
            abstract: "Write a Metalink 4 (.meta4) for a file: its size, SHA-256, piece SHA-256s and mirror URLs.",
            discussion: """
            The file is read once. The .meta4 goes to -o (default FILE.meta4 beside the file); an
            existing one is not replaced without --force. `haul get OUT.meta4` then downloads from
            the URLs, checks every piece as it lands and the whole file at the end.
            """
        )

        @Argument(help: "The file to describe.")
        var file: String

        @Option(name: .customLong("url"), parsing: .upToNextOption,
                help: "Where the file is served (http or https); repeat or list several. Order is priority.")
        var urls: [String] = []

        @Option(help: "The length of each piece (e.g. 1M, 4M).")
        var pieceSize: ByteSize = ByteSize(bytes: 4 << 20)

        @Option(name: .customLong("location"), parsing: .upToNextOption,
                help: "Country codes of the URLs (ISO 3166, e.g. de us), in the same order as --url.")
        var locations: [String] = []

        @Option(help: "The name the metalink gives the file (default: FILE's name).")
        var name: String?

        @Option(name: .shortAndLong, help: "Where to write the .meta4 (default: FILE.meta4).")
        var output: String?

        @Flag(help: "Replace an existing output file.")
        var force = false

        func validate() throws {
            guard !urls.isEmpty else { throw ValidationError("give at least one --url where the file is served") }
            for text in urls {
                guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                      scheme == "http" || scheme == "https", url.host != nil else {
                    throw ValidationError("'\(text)' is not an http or https URL")
                }
            }
            guard locations.count <= urls.count else { throw ValidationError("more --location values than --url values") }
            for location in locations where location.count != 2 || !location.allSatisfy({ $0.isASCII && $0.isLetter }) {
                throw ValidationError("'\(location)' is not a two-letter country code")
            }
            guard pieceSize.bytes >= 1024 else { throw ValidationError("--piece-size must be at least 1K") }
        }

        func run() async throws {
            let source = URL(fileURLWithPath: file)
            let name = self.name ?? source.lastPathComponent
            let sources = urls.enumerated().map { index, text in
                Metalink.Source(url: URL(string: text)!, priority: index + 1,
                                location: index < locations.count ? locations[index] : nil)
            }
            let out = URL(fileURLWithPath: output ?? file + ".meta4")
            do {
                let metalink = try Metalink.publish(fileAt: source.path, name: name, pieceLength: pieceSize.bytes,
                                                    sources: sources, to: out, replacing: force)
                let described = metalink.files[0]
                Console.line("wrote \(out.path): \(described.size ?? 0) bytes, \(described.pieces?.count ?? 0) pieces "
                    + "of \(pieceSize.bytes) bytes, sha-256 \(described.strongHash?.hex ?? "")")
            } catch {
                FileHandle.standardError.write(Data("haul: \(error)\n".utf8))
                throw ExitStatus(for: error).code
            }
        }
    }
}
