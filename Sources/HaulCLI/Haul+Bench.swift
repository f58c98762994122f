import ArgumentParser
import Foundation
import Haul

extension HaulCommand {
    /// `haul bench URL…`: which mirror is fastest, and do they agree about the file.
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure mirrors: time to first byte, throughput over 1 and N connections, range support.",
            discussion: """
            Each URL is measured in turn, bounded by --duration per phase and --bytes; nothing is \
            written to disk. Prints a table ranked by N-connection throughput (fastest first), or \
            JSON with --json. Also says whether the mirrors agree on length and validators.
            """
        )

        @Argument(help: "The URLs (mirrors of one file, or any files) to measure, or a FILE.meta4 whose mirrors to rank.")
        var urls: [String]

        @Option(name: [.customShort("x"), .long], help: "Connections for the multi-connection phase.")
        var connections: Int = 8

        @Option(help: "Seconds at most for each phase.")
        var duration: Double = 3

        @Option(help: "Bytes at most per phase (e.g. 64M).")
        var bytes: ByteSize = ByteSize(bytes: 64 << 20)

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func validate() throws {
            guard !urls.isEmpty else { throw ValidationError("give at least one URL") }
            for text in urls where !HaulCommand.Get.isMetalinkFile(text) {
                guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                      scheme == "http" || scheme == "https", url.host != nil else {
                    throw ValidationError("'\(redactingCredentials(text))' is not an http or https URL")
                }
            }
            guard (1...64).contains(connections) else { throw ValidationError("--connections must be between 1 and 64") }
            guard duration > 0, duration <= 60 else { throw ValidationError("--duration must be between 0 and 60 seconds") }
            guard bytes.bytes > 0 else { throw ValidationError("--bytes must be positive") }
        }

        func run() async throws {
            let session = DownloadSession(configuration: .default)
            var results: [MirrorMeasurement] = []
            // A metalink's mirrors are measured with its location and priority beside them.
            var described: [URL: Metalink.Source] = [:]
            var targets: [URL] = []
            for text in urls {
                guard HaulCommand.Get.isMetalinkFile(text) else {
                    targets.append(URL(string: text)!)
                    continue
                }
                let metalink: Metalink
                do {
                    metalink = try Metalink(data: await HaulCommand.Get.read(metalink: text, session: session))
                } catch {
                    FileHandle.standardError.write(Data("haul: \(text): \(error)\n".utf8))
                    throw ExitStatus.usage.code
                }
                for source in metalink.files.flatMap({ $0.orderedSources() }) where described[source.url] == nil {
                    described[source.url] = source
                    targets.append(source.url)
                }
            }
            for url in targets {
                results.append(await session.measure(url, connections: connections, duration: duration, bytes: bytes.bytes))
            }
            let ranked = results.sorted {
                ($0.error == nil ? 1 : 0, $0.multiConnectionBytesPerSecond) > ($1.error == nil ? 1 : 0, $1.multiConnectionBytesPerSecond)
            }
            let usable = results.filter { $0.error == nil }
            let agree = Set(usable.map { "\($0.length.map(String.init) ?? "?")|\($0.etag ?? "")|\($0.lastModified ?? "")" }).count <= 1
            if json {
                let objects: [[String: Any]] = ranked.enumerated().map { rank, m in
                    var object: [String: Any] = [
                        "rank": rank + 1, "url": m.url.withoutCredentials.absoluteString, "connections": m.connections,
                        "single_connection_bytes_per_second": Int(m.singleConnectionBytesPerSecond),
                        "multi_connection_bytes_per_second": Int(m.multiConnectionBytesPerSecond),
                        "supports_ranges": m.supportsRanges,
                    ]
                    object["time_to_first_byte_seconds"] = m.timeToFirstByte.map { ($0 * 10000).rounded() / 10000 }
                    object["length"] = m.length
                    object["etag"] = m.etag
                    object["last_modified"] = m.lastModified
                    object["error"] = m.error
                    if let source = described[m.url] {
                        object["location"] = source.location
                        object["priority"] = source.priority
                    }
                    return object
                }
                let document: [String: Any] = ["mirrors": objects, "validators_agree": agree]
                let data = try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted])
                Console.line(String(decoding: data, as: UTF8.self))
            } else {
                Console.line("rank  \("url".padding(toLength: 44, withPad: " ", startingAt: 0))  ttfb     1 conn      \(connections) conns     ranges  length")
                for (rank, m) in ranked.enumerated() {
                    let url = m.url.withoutCredentials.absoluteString
                    let shortURL = url.count > 44 ? String(url.prefix(43)) + "…" : url.padding(toLength: 44, withPad: " ", startingAt: 0)
                    // A metalink's mirror: its location and priority after the measurements.
                    let origin = described[m.url].map {
                        "  location \($0.location ?? "-"), priority \($0.priority.map(String.init) ?? "-")"
                    } ?? ""
                    if let error = m.error {
                        Console.line("\(String(rank + 1).padding(toLength: 4, withPad: " ", startingAt: 0))  \(shortURL)  failed: \(error)\(origin)")
                        continue
                    }
                    let ttfb = m.timeToFirstByte.map { String(format: "%.0f ms", $0 * 1000) } ?? "-"
                    Console.line([String(rank + 1).padding(toLength: 4, withPad: " ", startingAt: 0), shortURL,
                                  ttfb.padding(toLength: 7, withPad: " ", startingAt: 0),
                                  (Format.bytes(Int64(m.singleConnectionBytesPerSecond)) + "/s").padding(toLength: 11, withPad: " ", startingAt: 0),
                                  (Format.bytes(Int64(m.multiConnectionBytesPerSecond)) + "/s").padding(toLength: 12, withPad: " ", startingAt: 0),
                                  (m.supportsRanges ? "yes" : "no").padding(toLength: 6, withPad: " ", startingAt: 0),
                                  m.length.map { Format.bytes($0) } ?? "?"].joined(separator: "  ") + origin)
                }
                if usable.count > 1 {
                    Console.line(agree ? "All mirrors agree on length and validators."
                                       : "The mirrors disagree on length or validators: they may not serve the same file.")
                }
            }
            if usable.isEmpty { throw ExitStatus.networkError.code }
        }
    }
}
