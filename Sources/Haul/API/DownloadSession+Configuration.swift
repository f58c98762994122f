import Foundation
import Logging

extension DownloadSession {
    /// Settings shared by every download of a session. `Configuration()` gives the defaults.
    public struct Configuration: Sendable {
        /// Connections one download may open at once (default 16). With
        /// `adaptsConnectionCount` (the default) this is a ceiling: the download opens as many as
        /// measurably help.
        public var connectionsPerDownload: Int = 16
        /// Find each download's connection count by measuring (default `true`): it starts on one
        /// connection, tries more, and keeps them only while the aggregate throughput rises with
        /// them (a server or path that limits each connection); on a link that one connection
        /// fills, extra connections only cost CPU. `false`: every download of at least
        /// `connectionsPerDownload × minimumSplitSize` bytes opens exactly
        /// `connectionsPerDownload` connections.
        public var adaptsConnectionCount = true
        /// Smallest range worth a request of its own (default 1 MiB). Connections take the file
        /// in chunks, in file order, of about a second of transfer each (at most 16 MiB), never
        /// smaller than this.
        public var minimumSplitSize: Int64 = 1 << 20
        /// Connections to one host across all downloads of the session (0: no limit).
        public var connectionsPerHost: Int = 0
        /// Retries per segment after a transient failure (default 5).
        public var retryLimit: Int = 5
        /// Time to establish a connection (default 30 s).
        public var timeoutIntervalForConnect: TimeInterval = 30
        /// A connection that receives less than `minimumBytesPerSecond` for this long is a stall
        /// (silent, or trickling) and is retried (default 30 s).
        public var timeoutIntervalForRequest: TimeInterval = 30
        /// The longest a whole download may take, retries included, before it fails with
        /// `URLError.timedOut` keeping what it wrote (default 7 days, as URLSession's).
        public var timeoutIntervalForResource: TimeInterval = 7 * 24 * 3600
        /// The slowest a connection may receive for `timeoutIntervalForRequest` before it counts
        /// as stalled (default 1 KiB/s; lowered per connection under `maximumBytesPerSecond`).
        public var minimumBytesPerSecond: Int = 1024
        /// Where temp files go when a download has no destination (default: the system temp directory).
        public var temporaryDirectory: URL?
        /// Headers sent with every request, e.g. `["Authorization": "Bearer …"]`.
        public var additionalHeaders: [String: String] = [:]

        /// Headers sent with every request, typed as `URLSessionConfiguration`'s: keys and values
        /// are read as strings (other values by their description); a request's own header of
        /// the same name wins. The same storage as `additionalHeaders`.
        public var httpAdditionalHeaders: [AnyHashable: Any]? {
            get { additionalHeaders.isEmpty ? nil : Dictionary(uniqueKeysWithValues: additionalHeaders.map { (AnyHashable($0.key), $0.value as Any) }) }
            set {
                var headers: [String: String] = [:]
                for (key, value) in newValue ?? [:] {
                    let name = (key.base as? String) ?? "\(key.base)"
                    headers[name] = (value as? String) ?? "\(value)"
                }
                additionalHeaders = headers
            }
        }

        /// `URLSessionConfiguration`'s name for `connectionsPerHost`: connections to one host
        /// across all downloads of the session (0: no limit).
        public var httpMaximumConnectionsPerHost: Int {
            get { connectionsPerHost }
            set { connectionsPerHost = max(0, newValue) }
        }

        /// Whether a task whose server cannot be reached (no route, refused, name not found)
        /// waits and tries again until `timeoutIntervalForResource` instead of failing, telling
        /// its delegate `taskIsWaitingForConnectivity` once (default false, as URLSession's).
        public var waitsForConnectivity: Bool = false

        /// `User-Agent` header (default `haul/<version>`).
        public var userAgent: String = "haul/\(Haul.version)"
        /// A PEM bundle of CA certificates to trust instead of the system's.
        public var caCertificateFile: String?
        /// Whether TLS certificates and host names are verified (default true).
        public var verifiesTLSCertificates: Bool = true
        /// A proxy URL (`http://host:port`, `socks5://host:port`).
        public var proxy: String?
        /// Whether a completed file is flushed to disk (`fdatasync`) before it is moved into place,
        /// so it survives a power cut (default true).
        public var syncsBeforeMove: Bool = true
        /// Whether a finished download replaces a regular file already at its destination
        /// (default true, like a move that overwrites). Off, such a download fails at once with
        /// `HaulError.destinationExists` and the final rename never replaces. A file that
        /// appears at the destination while the download runs is kept: the download then fails
        /// with `destinationExists` too, and its whole, checked bytes stay beside the destination
        /// in a hidden partial file with a journal: the resume data of
        /// `DownloadSession.journal(for:)` finishes the download without fetching again once the
        /// name is free. Directories, links and devices are never replaced.
        public var replacesExistingFiles: Bool = true
        /// When the file changes on the server mid-download (or between cancel and resume), start
        /// over from byte 0 (true, the default) or fail with `HaulError.remoteFileChanged`.
        /// Bytes of two versions are never mixed either way.
        public var restartsWhenRemoteFileChanges: Bool = true
        /// Whether resume data and journals record `Authorization`, `Proxy-Authorization` and
        /// `Cookie` headers and a password in the URL (default false: a resumed download must be
        /// given them again).
        public var resumeDataIncludesCredentials: Bool = false
        /// Whether mirrors receive the `Authorization` and `Cookie` headers meant for the URL
        /// (default false: a mirror is another server, and gets no credentials unless its own URL
        /// carries them).
        public var sendsCredentialsToMirrors: Bool = false
        /// Whether mirrors the first response names (`Link: <…>; rel=duplicate; pri=N`,
        /// Metalink/HTTP, RFC 6249) join the download, and a metalink it names
        /// (`Link: <…>; rel=describedby; type="application/metalink4+xml"`) is fetched for its
        /// hashes, piece hashes and mirrors (default true). Like every mirror they get no
        /// credentials unless `sendsCredentialsToMirrors`. With an instance digest
        /// (`Repr-Digest`, `Digest`) in that response, `rel=duplicate` mirrors keep their own
        /// validators; without one they are held to the first server's.
        public var usesMirrorsFromLinkHeaders: Bool = true
        /// Whether a download keeps a journal (its resume data) beside its partial file, updated as
        /// it runs and synced to disk every few seconds, so a killed process or a power cut loses
        /// little (default true). Without it only `cancel(byProducingResumeData:)` and failures
        /// produce resume data.
        public var writesJournal: Bool = true
        /// Whether every download's SHA-256 is computed while it runs (default true; always on
        /// when a digest is expected). It is read back from the page cache on a separate queue.
        public var computesSHA256: Bool = true
        /// Keep a file whose SHA-256 does not match, at its temp path, for inspection (default
        /// false: it is deleted).
        public var keepsFilesFailingChecksum: Bool = false
        /// Replace a connection running far below the median of its peers (after a grace
        /// period) with a new one on the same remaining range, possibly to another mirror
        /// (default true).
        public var replacesSlowConnections: Bool = true
        /// A connection slower than this fraction of its peers' median is slow (default 0.3).
        public var slowConnectionRatio: Double = 0.3
        /// How long a connection runs before its speed is judged (default 1 s: long enough for a
        /// new connection to ramp up, short enough to matter for a download of a few seconds).
        public var slowConnectionGracePeriod: TimeInterval = 1
        /// A download's receive limit in bytes per second over all its connections (0, the
        /// default: none).
        public var maximumBytesPerSecond: Int64 = 0
        /// Receive buffer per connection in bytes (default 128 KiB; curl's own is 16 KiB). Larger
        /// means fewer callbacks, but 16 connections hold 16 buffers: on loopback 128 and 256 KiB
        /// ran equally fast and 128 KiB kept the 1 GiB download under 32 MiB resident.
        public var receiveBufferSize: Int = 128 * 1024
        /// How far each range request reaches across the boundaries of its neighbours (default
        /// 16 KiB). Where two responses meet, the bytes both delivered are compared, so a server
        /// that sends other bytes than it claims, or two versions of the file, is caught even
        /// without validators; 0 turns the comparison off.
        public var seamOverlap: Int64 = 16 << 10
        /// Where the session logs (swift-log): the sources and connections a download uses, each
        /// retry, dropped source and restart with its `reason` in the metadata, seam checks.
        /// `nil` (the default) logs warnings and errors only, through `Logger(label: "haul")` and
        /// the process's `LoggingSystem`: a library does not fill a program's output with its
        /// retries. Give a logger to see more.
        public var logger: Logger?
        /// Credentials from a netrc file: `~/.netrc` when `usesNetrc`, or `netrcFile`
        /// (libcurl's `CURLOPT_NETRC`; a user and password in the URL win).
        package var usesNetrc = false
        package var netrcFile: String?
        /// A Netscape-format cookie file whose cookies go to the hosts they name
        /// (libcurl's `CURLOPT_COOKIEFILE`).
        package var cookieFile: String?
        /// Every source of a download serves the same bytes, whatever their validators say
        /// (`haul get --same-file`): mirrors are not dropped for another ETag or Last-Modified;
        /// seam checks still compare their bytes.
        package var mirrorsServeSameBytes = false

        /// The background session's identifier (`background(withIdentifier:)`), or `nil` for a
        /// session whose downloads run in this process.
        public var identifier: String?
        /// Where a background session finds its `haul daemon` (its state directory; default
        /// `$XDG_STATE_HOME/haul`).
        public var daemonStateDirectory: String?

        /// The defaults.
        public init() {}

        /// The defaults.
        public static var `default`: Configuration { Configuration() }

        /// Settings that leave nothing on disk but the downloaded files, as URLSession's
        /// `.ephemeral`: no journal beside a download (so a killed process cannot continue
        /// it; `cancel(byProducingResumeData:)` and a failure's resume data still work) and no
        /// credentials in resume data.
        public static var ephemeral: Configuration {
            var configuration = Configuration()
            configuration.writesJournal = false
            configuration.resumeDataIncludesCredentials = false
            return configuration
        }

        /// A session whose tasks run in `haul daemon`, so they continue when this process is not
        /// running; a later process that creates a session with the same identifier gets them
        /// back (`allTasks`) and receives, through its delegate, what ended meanwhile. As on
        /// Apple's platforms, tasks need a delegate (completion handlers are refused), and the
        /// daemon writes the files into its download directory.
        public static func background(withIdentifier identifier: String) -> Configuration {
            var configuration = Configuration()
            configuration.identifier = identifier
            return configuration
        }
    }
}
