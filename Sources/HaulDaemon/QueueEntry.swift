import Foundation
import Haul

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
    /// The background session that owns this download (`DownloadSession` with
    /// `.background(withIdentifier:)`), its `taskDescription`, and whether its end was delivered
    /// to a process of that session.
    var session: String?
    var taskDescription: String?
    var delivered = false
    /// aria2's `max-download-limit` in bytes per second (nil or 0: none).
    var maxDownloadLimit: Int64?
    /// aria2's `min-split-size` in bytes.
    var minSplit: Int64?
    /// aria2's `allow-overwrite`: a regular file already at the name may be replaced.
    var allowOverwrite = false
    /// Made by `aria2.addMetalink`: the metalink of this one file (its pieces and hashes) is
    /// kept in the state directory, and `name` may have directories (inside the root).
    var hasMetalink = false
    /// aria2's `metalink-location`: mirrors in this country are tried first.
    var metalinkLocation: String?

    init(gid: String, uris: [String], name: String, status: Status, connections: Int? = nil, checksum: String? = nil,
         headers: [String] = [], session: String? = nil, taskDescription: String? = nil) {
        self.gid = gid
        self.uris = uris
        self.name = name
        self.status = status
        self.connections = connections
        self.checksum = checksum
        self.headers = headers
        self.session = session
        self.taskDescription = taskDescription
    }

    enum CodingKeys: String, CodingKey {
        case gid, uris, name, status, connections, checksum, headers, totalLength, completedLength, errorCode,
             errorMessage, sha256, seamsChecked, session, taskDescription, delivered, maxDownloadLimit, minSplit,
             allowOverwrite, hasMetalink, metalinkLocation
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        gid = try c.decode(String.self, forKey: .gid)
        uris = try c.decode([String].self, forKey: .uris)
        name = try c.decode(String.self, forKey: .name)
        status = try c.decode(Status.self, forKey: .status)
        connections = try c.decodeIfPresent(Int.self, forKey: .connections)
        checksum = try c.decodeIfPresent(String.self, forKey: .checksum)
        headers = try c.decodeIfPresent([String].self, forKey: .headers) ?? []
        totalLength = try c.decodeIfPresent(Int64.self, forKey: .totalLength) ?? 0
        completedLength = try c.decodeIfPresent(Int64.self, forKey: .completedLength) ?? 0
        errorCode = try c.decodeIfPresent(String.self, forKey: .errorCode)
        errorMessage = try c.decodeIfPresent(String.self, forKey: .errorMessage)
        sha256 = try c.decodeIfPresent(String.self, forKey: .sha256)
        seamsChecked = try c.decodeIfPresent(Int.self, forKey: .seamsChecked) ?? 0
        session = try c.decodeIfPresent(String.self, forKey: .session)
        taskDescription = try c.decodeIfPresent(String.self, forKey: .taskDescription)
        delivered = try c.decodeIfPresent(Bool.self, forKey: .delivered) ?? false
        maxDownloadLimit = try c.decodeIfPresent(Int64.self, forKey: .maxDownloadLimit)
        minSplit = try c.decodeIfPresent(Int64.self, forKey: .minSplit)
        allowOverwrite = try c.decodeIfPresent(Bool.self, forKey: .allowOverwrite) ?? false
        hasMetalink = try c.decodeIfPresent(Bool.self, forKey: .hasMetalink) ?? false
        metalinkLocation = try c.decodeIfPresent(String.self, forKey: .metalinkLocation)
    }
}

/// Everything the daemon must not lose: the queue in order and the finished results.
struct DaemonState: Codable, Sendable {
    /// The format this daemon writes and reads.
    static let currentVersion = 1
    var version = currentVersion
    /// Active, waiting and paused downloads, in queue order.
    var queue: [QueueEntry] = []
    /// Completed, failed and removed downloads, oldest first, bounded.
    var stopped: [QueueEntry] = []

    /// How many stopped results are kept (aria2's `max-download-result` default).
    static let maximumStopped = 1000
}

extension QueueEntry {
    /// Why this saved entry is one the daemon would never have made (a damaged or edited state
    /// file), or `nil`: a name that is not a plain file name (a metalink's may have directories,
    /// never `..`, an absolute path or a side file's form), or no http(s) URI to fetch.
    var damage: String? {
        let components = name.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard hasMetalink || components.count == 1 else { return "its name '\(name)' is not a plain file name" }
        for component in components where !PlacementRoot.isValidName(component) || component == "." {
            return "its name '\(name)' does not stay inside the download directory"
        }
        if let leaf = components.last, DownloadSession.isSideName(leaf) {
            return "its name '\(name)' has the form of a partial file's or journal's name"
        }
        guard !uris.isEmpty, uris.allSatisfy({ uri in
            guard let url = URL(string: uri), let scheme = url.scheme?.lowercased() else { return false }
            return (scheme == "http" || scheme == "https") && url.host != nil
        }) else {
            return "it has no http or https URI to fetch"
        }
        return nil
    }
}
