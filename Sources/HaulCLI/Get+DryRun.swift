import Foundation
import Haul

extension HaulCommand.Get {
    /// `--dry-run`: what each URL's answer to a one-byte range request says; nothing is written.
    func dryRun(_ urls: [String], reporter: Reporter) async throws {
        let session = DownloadSession(configuration: transfer.configuration())
        var worst = ExitStatus.success
        for text in urls {
            guard let url = URL(string: text) else { continue }
            let probe = await session.probe(url)
            let shown = url.withoutCredentials.absoluteString
            let name = output.map { ($0 as NSString).lastPathComponent } ?? probe.serverName ?? OutputName.from(url: url)
            var status = ExitStatus.success
            if let code = probe.status, !(200..<300).contains(code) {
                status = .httpError
            } else if probe.error != nil || probe.status == nil {
                status = .networkError
            }
            if worst == .success { worst = status }
            if json {
                var object: [String: Any] = ["event": "probe", "url": shown, "name": name,
                                             "ranges": probe.supportsRanges]
                object["status"] = probe.status
                object["length"] = probe.length
                object["etag"] = probe.etag
                object["last_modified"] = probe.lastModified
                object["sha256"] = probe.sha256
                object["digest_header"] = probe.digestSource
                object["error"] = probe.error
                if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                    Console.line(String(decoding: data, as: UTF8.self))
                }
                continue
            }
            if status != .success {
                reporter.error("\(shown): " + (status == .httpError ? "the server answered HTTP \(probe.status ?? 0)" : probe.error ?? "no answer"))
                continue
            }
            guard !quiet else { continue }
            Console.line(shown)
            Console.line("  name:          \(name)" + (probe.serverName != nil && output == nil ? " (from Content-Disposition)" : ""))
            Console.line("  size:          " + (probe.length.map { "\(Format.bytes($0)) (\($0) bytes)" } ?? "unknown"))
            Console.line("  ranges:        " + (probe.supportsRanges ? "yes (several connections)" : "no (one connection)"))
            Console.line("  ETag:          \(probe.etag ?? "none")")
            Console.line("  Last-Modified: \(probe.lastModified ?? "none")")
            Console.line("  digest:        " + (probe.sha256.map { "sha-256 \($0) (\(probe.digestSource ?? "server"))" } ?? "none"))
        }
        if worst != .success { throw worst.code }
    }
}
