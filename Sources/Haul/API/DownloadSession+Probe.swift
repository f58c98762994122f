import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What one ranged request for a URL's first byte says about the file (`haul get --dry-run`).
package struct DownloadProbe: Sendable {
    /// The status of the final response (after redirects), or `nil` when none arrived.
    package var status: Int?
    /// The file's length, when the server said.
    package var length: Int64?
    /// Whether the server answered the range request with `206`.
    package var supportsRanges: Bool
    package var etag: String?
    package var lastModified: String?
    /// The name the server proposes (`Content-Disposition`), reduced to a bare file name.
    package var serverName: String?
    /// The server's digest of the file (`Repr-Digest: sha-256`) as hex, and the header it came from.
    package var sha256: String?
    package var digestSource: String?
    /// Why no answer came, if none did.
    package var error: String?
}

extension DownloadSession {
    /// Bytes `from..<from + count` of `url`, or `nil` unless the server answered `206` with
    /// exactly them (for comparing a file on disk with the server's; keep `count` small).
    package func fetchBytes(_ url: URL, from: Int64, count: Int64) async -> [UInt8]? {
        guard count > 0 else { return [] }
        var options = (try? settings(for: URLRequest(url: url)).request) ?? RequestOptions(url: url.absoluteString)
        options.stallTimeoutSeconds = max(1, Int(configuration.timeoutIntervalForRequest.rounded(.up)))
        let outcome = await ThroughputProbe(multi: multi, options: options)
            .fetch(from: from, count: count, limit: .seconds(Int64(max(1, configuration.timeoutIntervalForRequest))))
        guard let head = outcome.head, head.status == 206, head.contentRange?.first == from,
              let kept = outcome.kept, kept.count == Int(count) else { return nil }
        return kept
    }

    /// Asks `url` for its first byte (with the session's headers, proxy and TLS settings) and
    /// reports what the answer says about the file; nothing is written.
    package func probe(_ url: URL) async -> DownloadProbe {
        var options = (try? settings(for: URLRequest(url: url)).request) ?? RequestOptions(url: url.absoluteString)
        options.stallTimeoutSeconds = max(1, Int(configuration.timeoutIntervalForRequest.rounded(.up)))
        let outcome = await ThroughputProbe(multi: multi, options: options)
            .run(connections: 1, bytesEach: 1, limit: .seconds(Int64(max(1, configuration.timeoutIntervalForRequest))))
        let head = outcome.head
        let digest = head.flatMap { SHA256Digest.fromServer($0.fields) }
        let disposition = head?.fields.first { $0.name.lowercased() == "content-disposition" }?.value
        // A 206's Content-Length is the part's; only its Content-Range names the file's length
        // (none for `bytes 0-0/*`).
        let length = head.flatMap { $0.status == 206 ? $0.contentRange?.completeLength : $0.contentLength }
        return DownloadProbe(status: head?.status, length: length,
                             supportsRanges: head?.status == 206, etag: head?.etag, lastModified: head?.lastModified,
                             serverName: disposition.flatMap(OutputName.from(contentDisposition:)),
                             sha256: digest?.0.hex, digestSource: digest?.1.rawValue, error: outcome.error)
    }
}
