import ArgumentParser
import Foundation
import Haul

/// Connection settings shared by the subcommands that download.
struct TransferOptions: ParsableArguments {
    @Option(name: [.customShort("x", allowingJoined: true), .customShort("s", allowingJoined: true), .long],
            help: "Most connections per download (1-64; -s is aria2's spelling). Haul measures how many help and opens only those; --fixed opens exactly this many.")
    var connections: Int = 16

    @Flag(help: "Open exactly -x connections per download instead of measuring how many help.")
    var fixed = false

    @Option(name: [.customShort("k", allowingJoined: true), .long], help: "Smallest range worth its own connection (e.g. 1M).")
    var minSplit: ByteSize = ByteSize(bytes: 1 << 20)

    @Option(name: [.long, .customShort("t", allowingJoined: true), .customLong("tries"), .customLong("retry")],
            help: "Tries per segment after a transient failure (-t, --tries: wget's spelling; --retry: curl's).")
    var maxTries: Int = 5

    @Option(help: "Seconds a connection may stay under 1 KiB/s (silent or trickling) before it is dropped and retried; also the connect timeout.")
    var timeout: Double = 30

    @Option(help: "Seconds the whole download may take, retries included; then it stops, resumable.")
    var maxTime: Double?

    @Option(help: "How far each range request reaches across its neighbours' boundaries; the bytes two responses both carry are compared (0 turns the check off).")
    var seamOverlap: ByteSize = ByteSize(bytes: 16 << 10)

    @Option(help: "Limit each download to this many bytes per second (e.g. 2M).")
    var limitRate: ByteSize?

    @Option(name: [.customShort("H"), .customLong("header")], help: ArgumentHelp("Extra request header, e.g. -H 'Authorization: Bearer …'.",
                                                       valueName: "Name: value"))
    var headers: [String] = []

    @Option(name: [.customShort("U"), .long], help: "User-Agent header.")
    var userAgent: String?

    @Option(help: "PEM file of CA certificates to trust.")
    var cacert: String?

    @Flag(help: "Do not verify TLS certificates (insecure).")
    var insecure = false

    @Option(help: "Proxy URL, e.g. http://proxy:3128 or socks5://127.0.0.1:1080.")
    var proxy: String?

    @Flag(help: "Take the user name and password for the host from ~/.netrc (as curl and wget do).")
    var netrc = false

    @Option(help: ArgumentHelp("Take credentials from this netrc file.", valueName: "file"))
    var netrcFile: String?

    @Option(help: ArgumentHelp("Send the cookies of this Netscape-format cookie file (as curl -b and wget --load-cookies read it).",
                               valueName: "file"))
    var loadCookies: String?

    func validate() throws {
        guard (1...64).contains(connections) else {
            throw ValidationError("--connections must be between 1 and 64, got \(connections)")
        }
        guard minSplit.bytes >= 1 else { throw ValidationError("--min-split must be at least 1 byte") }
        guard maxTries >= 0 else { throw ValidationError("--max-tries must not be negative") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if let maxTime, maxTime <= 0 { throw ValidationError("--max-time must be positive") }
        for (option, file) in [("--netrc-file", netrcFile), ("--load-cookies", loadCookies)] {
            if let file, !FileManager.default.isReadableFile(atPath: file) {
                throw ValidationError("\(option): cannot read \(file)")
            }
        }
        for header in headers where !header.contains(":") || header.hasPrefix(":") {
            throw ValidationError("-H takes 'Name: value', got '\(header)'")
        }
    }

    /// The session configuration these options describe.
    func configuration() -> DownloadSession.Configuration {
        var configuration = DownloadSession.Configuration()
        configuration.connectionsPerDownload = connections
        configuration.adaptsConnectionCount = !fixed
        configuration.minimumSplitSize = minSplit.bytes
        configuration.retryLimit = maxTries
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForConnect = timeout
        if let maxTime { configuration.timeoutIntervalForResource = maxTime }
        configuration.maximumBytesPerSecond = limitRate?.bytes ?? 0
        configuration.seamOverlap = seamOverlap.bytes
        for header in headers {
            let parts = header.split(separator: ":", maxSplits: 1)
            configuration.additionalHeaders[String(parts[0]).trimmingCharacters(in: .whitespaces)] =
                parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""
        }
        if let userAgent { configuration.userAgent = userAgent }
        configuration.caCertificateFile = cacert
        configuration.verifiesTLSCertificates = !insecure
        configuration.proxy = proxy
        configuration.usesNetrc = netrc
        configuration.netrcFile = netrcFile
        configuration.cookieFile = loadCookies
        return configuration
    }
}
