/// One download the daemon keeps, as it is stored: enough to start it again after a restart.
struct QueueEntry: Codable, Sendable, Equatable {
    /// aria2's states, with aria2's names.
    enum Status: String, Codable, Sendable {
        case active, waiting, paused, error, complete, removed

        var isStopped: Bool { self == .error || self == .complete || self == .removed }
    }

    /// 16 hex digits, as aria2's.
    var gid: String
    /// The URL first, then mirrors of the same file.
    var uris: [String]
    /// The file's name in the download root.
    var name: String
    var status: Status
    /// Connections for this download (aria2's `split`), or the daemon's default.
    var connections: Int?
    /// The expected digest, `sha-256=HEX`.
    var checksum: String?
    /// Extra request headers (`Name: value`). Kept in the private state directory so a restart
    /// can send them again.
    var headers: [String] = []
    var totalLength: Int64 = 0
    var completedLength: Int64 = 0
    /// aria2's error code (as a string of digits) and a message, for stopped downloads.
    var errorCode: String?
    var errorMessage: String?
    /// The SHA-256 of a completed file, and seam counts.
    var sha256: String?
    var seamsChecked = 0
}

/// Everything the daemon must not lose: the queue in order and the finished results.
struct DaemonState: Codable, Sendable {
    var version = 1
    /// Active, waiting and paused downloads, in queue order.
    var queue: [QueueEntry] = []
    /// Completed, failed and removed downloads, oldest first, bounded.
    var stopped: [QueueEntry] = []

    /// How many stopped results are kept (aria2's `max-download-result` default).
    static let maximumStopped = 1000
}
