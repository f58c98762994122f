import CHaulSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a finished download notes on its file, as the extended attribute `user.haul.finished`:
/// the URL it came from, the file's length and SHA-256, and the server's validators (`ETag`,
/// `Last-Modified`) for that version. Written on the partial file before it takes its name, so
/// a file under the name carries the record of its own bytes or none.
///
/// It lets a later run tell a file this program finished from any other file of the same name:
/// rerunning an interrupted batch keeps the files that had finished, once the server still has
/// the same version and the bytes still hash to the record. The URL is kept as its SHA-256
/// only, since a signed URL carries a token. Nothing in it is trusted: a record is a claim that
/// is checked against the file's owner, its bytes and the server's answer and bytes, never a
/// path or a reason to write. Where a file system keeps no extended attributes there is no
/// record, and a file already there is reported as existing, as without one.
package struct FinishedRecord: Codable, Equatable, Sendable {
    /// The attribute's name.
    package static let attributeName = "user.haul.finished"
    /// The largest record read or written (ext4 keeps at most one block of attributes).
    static let largest = 2048

    /// The format's version; 1.
    package var version: Int
    /// SHA-256 (hex) of the URL the download was made from, without credentials.
    package var url: String
    package var length: Int64
    /// SHA-256 (hex) of the file's bytes.
    package var sha256: String
    package var etag: String?
    package var lastModified: String?

    package init(url: URL, length: Int64, sha256: String, etag: String?, lastModified: String?) {
        version = 1
        self.url = Self.digest(of: url)
        self.length = length
        self.sha256 = sha256
        self.etag = etag
        self.lastModified = lastModified
    }

    /// How a record names a URL.
    package static func digest(of url: URL) -> String {
        var hash = SHA256()
        hash.update(Array(url.withoutCredentials.absoluteString.utf8))
        return hash.finalizeHex()
    }

    /// Whether the record says its file came from `url`.
    package func isFrom(_ url: URL) -> Bool {
        self.url == Self.digest(of: url)
    }

    /// The record as stored, or `nil` when it would be too large to store.
    func encoded() -> Data? {
        guard let data = try? JSONEncoder().encode(self), data.count <= Self.largest else { return nil }
        return data
    }

    /// A stored record, read strictly: anything malformed is no record.
    init?(stored data: Data) {
        guard data.count <= Self.largest, let record = try? JSONDecoder().decode(Self.self, from: data),
              record.version == 1, Self.isHexDigest(record.url), Self.isHexDigest(record.sha256), record.length >= 0 else {
            return nil
        }
        self = record
    }

    private static func isHexDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// Sets the record on the open file `fd`. `false` when the file system keeps no such
    /// attribute (or refuses it): the file is then simply without a record.
    @discardableResult
    package func write(to fd: Int32) -> Bool {
        guard let data = encoded() else { return false }
        return data.withUnsafeBytes { chaul_set_attribute(fd, Self.attributeName, $0.baseAddress, $0.count) } == 0
    }

    /// Whether files made in `directory` can carry a record (its file system keeps user
    /// extended attributes); tried on a file made and removed there.
    package static func canBeKept(in directory: String) -> Bool {
        let path = directory + "/.haul-record-\(UUID().uuidString)"
        let fd = retryingInterrupts { open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { return false }
        defer {
            _ = close(fd)
            _ = unlink(path)
        }
        return FinishedRecord(url: URL(fileURLWithPath: path), length: 0, sha256: String(repeating: "0", count: 64),
                              etag: nil, lastModified: nil).write(to: fd)
    }

    /// Removes any record from the open file `fd` (one an earlier download left on a file this
    /// download took over), so a file is never published with a record of other bytes.
    static func remove(from fd: Int32) {
        _ = chaul_remove_attribute(fd, attributeName)
    }

    /// The record on the open file `fd`, if it has a well-formed one.
    static func read(from fd: Int32) -> FinishedRecord? {
        var buffer = [UInt8](repeating: 0, count: largest)
        let count = buffer.withUnsafeMutableBytes { chaul_get_attribute(fd, attributeName, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return FinishedRecord(stored: Data(buffer[0..<count]))
    }
}

/// A file at a download's output whose record says an earlier download of the same URL finished
/// it. The file stays open: its ends and its bytes are read through this descriptor, and
/// `isStill(at:)` tells whether the path still names it, so a file swapped in meanwhile is never
/// taken for it.
package final class EarlierDownload: @unchecked Sendable {
    // Unchecked: every stored property is set once in init; the descriptor is only read with
    // `pread` (no shared offset) and closed in deinit.
    package let record: FinishedRecord
    /// The file's size, owner and number of names when it was opened.
    package let size: Int64
    package let owner: uid_t
    package let links: Int
    private let fd: Int32
    private let device: UInt64
    private let inode: UInt64
    /// When the file last changed (its status change time, which a write always moves and no
    /// caller can set back), when it was opened.
    private let changed: timespec

    private init(fd: Int32, record: FinishedRecord, info: stat) {
        self.fd = fd
        self.record = record
        size = Int64(info.st_size)
        owner = info.st_uid
        links = Int(info.st_nlink)
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        changed = info.st_ctim
    }

    deinit { _ = close(fd) }

    /// The regular file at `path` (never through a link), if its record says it came from one
    /// of `sources`. `nil` for anything else: no file, another kind of file, no record, or a
    /// record of another URL. Nothing is hashed yet.
    package static func at(_ path: String, from sources: [URL]) -> EarlierDownload? {
        let fd = retryingInterrupts { open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, let record = FinishedRecord.read(from: fd),
              sources.contains(where: record.isFrom) else {
            _ = close(fd)
            return nil
        }
        return EarlierDownload(fd: fd, record: record, info: info)
    }

    /// Whether the file's bytes hash to the record's SHA-256; `nil` when they could not be
    /// read, or `stop` said to stop (it is asked between reads of 1 MiB, so a large file can be
    /// given up at once).
    package func matchesRecord(stop: () -> Bool) -> Bool? {
        guard let digest = try? SHA256.hex(ofDescriptor: fd, path: "", stop: stop) else { return nil }
        return digest == record.sha256
    }

    /// `count` bytes from `offset`, or `nil` unless all of them could be read.
    package func bytes(at offset: Int64, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { buffer in
            retryingInterrupts { pread(fd, buffer.baseAddress, count, off_t(offset)) }
        }
        return read == count ? bytes : nil
    }

    /// Whether `path` still names this very file (never through a link), unchanged since it was
    /// opened: the same size and status change time, so a write in place while it was checked
    /// (behind the hash, say) counts as a change.
    package func isStill(at path: String) -> Bool {
        var named = stat()
        var current = stat()
        guard lstat(path, &named) == 0, UInt64(named.st_dev) == device, UInt64(named.st_ino) == inode,
              fstat(fd, &current) == 0 else { return false }
        return Int64(current.st_size) == size && current.st_ctim.tv_sec == changed.tv_sec
            && current.st_ctim.tv_nsec == changed.tv_nsec
    }
}
