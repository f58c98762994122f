import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The resume blob kept beside a temp file, replaced atomically: written to a side name, then
/// renamed over the journal, so a reader sees the old blob or the new one, never half of one.
struct Journal: Sendable {
    let path: String

    /// Replaces the journal with `data`. When `durable`, the data and the rename reach the disk
    /// (`fsync` of the file, then of its directory) before this returns.
    func write(_ data: Data, durable: Bool) throws(HaulError) {
        let side = path + ".new"
        let fd = retryingInterrupts { open(side, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
        guard fd >= 0 else { throw DataFile.error("open", side, errno) }
        var failure: Int32 = 0
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += written
            }
        }
        if failure == 0, durable, retryingInterrupts({ fsync(fd) }) != 0 { failure = errno }
        _ = close(fd)
        guard failure == 0 else {
            _ = unlink(side)
            throw DataFile.error("write", side, failure)
        }
        guard rename(side, path) == 0 else {
            let code = errno
            _ = unlink(side)
            throw DataFile.error("rename", path, code)
        }
        if durable { Self.syncDirectory(of: path) }
    }

    /// The journal's bytes, or `nil` when there is none.
    func read() -> Data? {
        FileManager.default.contents(atPath: path)
    }

    func remove() {
        _ = unlink(path)
        _ = unlink(path + ".new")
    }

    /// `fsync` of the directory holding `path`, so a rename in it is durable.
    static func syncDirectory(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = close(fd)
    }
}
