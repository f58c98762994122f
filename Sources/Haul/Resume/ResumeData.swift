import Foundation

/// Everything needed to continue a download: one versioned blob for all its segments.
///
/// `cancel(byProducingResumeData:)` returns it encoded, a failed download's error carries it,
/// and a journal beside the temp file keeps the latest copy so a killed process resumes. The
/// format is documented in docs/resume-format.md; `init(_:)` decodes it defensively.
public struct ResumeData: Sendable, Equatable {
    /// The temp file's identity when the blob was written, to notice a replaced file.
    public struct FileIdentity: Sendable, Equatable, Codable {
        /// Absolute path of the partial file.
        public var path: String
        /// `st_dev` of the file.
        public var device: UInt64
        /// `st_ino` of the file.
        public var inode: UInt64
        /// Its size in bytes (the full length once preallocated).
        public var size: Int64
    }

    /// A fingerprint of bytes already on disk: SHA-256 of `length` bytes at `offset`. An inode
    /// number can be reused by a new file; these bytes cannot change without the file changing.
    public struct Sample: Sendable, Equatable, Codable {
        /// Where the sampled bytes start.
        public var offset: Int64
        /// How many bytes were sampled (at most 1 MiB).
        public var length: Int64
        /// Their SHA-256, lowercase hex.
        public var sha256: String
    }

    /// The URL the download was made with.
    public var url: URL
    /// The URL after redirects, when different.
    public var finalURL: URL?
    /// Request method (always `GET` today).
    public var method: String
    /// Request header fields to send again. Credentials are left out unless the configuration
    /// opts in (`Configuration.resumeDataIncludesCredentials`).
    public var headers: [[String]]
    /// The server's ETag (a strong one is sent as `If-Range` when resuming).
    public var etag: String?
    /// The server's Last-Modified (the `If-Range` validator when there is no strong ETag).
    public var lastModified: String?
    /// The file's total length.
    public var length: Int64
    /// The temp file holding the bytes so far.
    public var tempFile: FileIdentity
    /// A fingerprint of the temp file's first done bytes (absent when none were done).
    public var sample: Sample?
    /// Byte ranges on disk (`pwrite` returned for them), sorted, disjoint, half-open.
    public var doneRanges: [Range<Int64>]
    /// The ranges covered by the last `fdatasync`: all that survives a power cut.
    public var syncedRanges: [Range<Int64>]
    /// `/proc/sys/kernel/random/boot_id` when the blob was written.
    public var bootID: String?
    /// Where the finished file goes, for downloads that named one.
    public var destination: String?
    /// The SHA-256 the finished file must have (lowercase hex), if one was given.
    public var expectedSHA256: String?
    /// The instance digest the URL's server sent (`Repr-Digest` or `Digest`) when no checksum
    /// was given: a resumed download is still held to it, even if the server stops sending
    /// it, so bytes that a mirror delivered under that digest are checked. It is dropped when
    /// the file changes on the server (a restart).
    package var serverSHA256: String?
    package var serverDigestHeader: ChecksumSource?
    /// For a download that continues another program's partial file (`haul -c`): how many
    /// bytes at its start were that file's. A download that ends for good without a result
    /// gives the file back under its own name, cut to these bytes, as it was found.
    package var adoptedPrefix: Int64?

    /// For a metalink download: the other sources of the file (its mirrors, in order).
    public var mirrors: [URL] = []
    /// For a metalink download with piece hashes: the piece length they were checked with.
    public var pieceLength: Int64?
    /// For a metalink download with piece hashes: the pieces whose hash was checked on disk
    /// (indices, sorted), so a resumed download does not hash them again.
    public var verifiedPieces: [Int] = []

    /// The current format version written by this library.
    public static let formatVersion = 1

    /// Bytes on disk.
    public var bytesDone: Int64 { doneRanges.reduce(0) { $0 + $1.count64 } }

    /// Bytes from offset 0 on disk without a gap (what `didResumeAtOffset` reports).
    public var contiguousPrefix: Int64 {
        guard let first = doneRanges.first, first.lowerBound == 0 else { return 0 }
        return first.upperBound
    }

    /// The ranges to trust on this machine now: all recorded ranges in the same boot, only the
    /// synced ones after a reboot (page-cache bytes do not survive a power cut).
    func trustedRanges(currentBootID: String?) -> [Range<Int64>] {
        if let bootID, let currentBootID, bootID == currentBootID { return doneRanges }
        return syncedRanges
    }
}

extension Range where Bound == Int64 {
    var count64: Int64 { upperBound - lowerBound }
}

/// Reads the kernel's boot ID (changes on every boot), or `nil` where there is none.
func currentBootID() -> String? {
    bootID
}

/// Read once: it changes only with a reboot, and every download asks.
private let bootID: String? = {
    guard let data = FileManager.default.contents(atPath: "/proc/sys/kernel/random/boot_id") else { return nil }
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return text.isEmpty ? nil : text
}()
