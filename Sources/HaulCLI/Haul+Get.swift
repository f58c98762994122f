import ArgumentParser
import Foundation
import Haul

extension HaulCommand {
    /// `haul get URL -o FILE`: one download over several connections.
    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download a URL over several connections.",
            discussion: """
            Exit codes: 0 success, 64 usage error, 1 download failed.
            """
        )

        @Argument(help: "The http or https URL to download.")
        var url: String

        @Option(name: .shortAndLong, help: "Where to write the file.")
        var output: String

        @Option(name: [.customShort("x"), .long], help: "Connections for this download (1-64).")
        var connections: Int = 16

        @Option(name: [.customShort("k"), .long], help: "Smallest range worth its own connection (e.g. 1M).")
        var minSplit: ByteSize = ByteSize(bytes: 1 << 20)

        @Flag(name: .shortAndLong, help: "Print nothing but errors.")
        var quiet = false

        @Flag(help: "Do not flush the file to disk before moving it into place (faster, not power-cut safe).")
        var noSync = false

        func validate() throws {
            guard (1...64).contains(connections) else {
                throw ValidationError("--connections must be between 1 and 64, got \(connections)")
            }
            guard minSplit.bytes >= 1 else { throw ValidationError("--min-split must be at least 1 byte") }
            guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", parsed.host != nil else {
                throw ValidationError("'\(url)' is not an http or https URL")
            }
        }

        func run() async throws {
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = connections
            configuration.minimumSplitSize = minSplit.bytes
            configuration.syncsBeforeMove = !noSync
            let session = DownloadSession(configuration: configuration)
            let destination = URL(fileURLWithPath: output)
            let started = ContinuousClock.now
            do {
                _ = try await session.download(from: URL(string: url)!, to: destination)
            } catch {
                FileHandle.standardError.write(Data("haul: \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
            if !quiet {
                let seconds = (ContinuousClock.now - started).seconds
                let size = (try? FileManager.default.attributesOfItem(atPath: destination.path)[.size] as? Int64) ?? 0
                let rate = seconds > 0 ? Double(size) / seconds / 1_048_576 : 0
                print("\(output): \(size) bytes in \(String(format: "%.2f", seconds)) s "
                      + "(\(String(format: "%.1f", rate)) MiB/s)")
            }
        }
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
