import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A finished download's file: the directory it was published in (held open since the download
/// began), its name there, and the inode that was written and hashed.
package struct FinishedFile: Sendable {
    let root: PlacementRoot
    var name: String
    let device: UInt64
    let inode: UInt64

    /// Throws unless `name` in `root` is still the inode written (never through a link).
    func check() throws(HaulError) {
        guard let info = try root.status(of: name), UInt64(info.st_dev) == device, UInt64(info.st_ino) == inode else {
            throw .fileSystem(operation: "find the downloaded file", path: root.location(of: name), errno: ENOENT)
        }
    }
}

extension DownloadTask {
    /// Whether the finished file is kept for `renameFinishedFile` and
    /// `setFinishedFileModificationTime` (set before `resume()`). Its directory then stays open
    /// until `releaseFinishedFile()`, so a caller with many tasks releases each when done.
    package var keepsFinishedFile: Bool {
        get { lock.withLock { _keepsFinishedFile } }
        set { lock.withLock { _keepsFinishedFile = newValue } }
    }

    /// Called once (on the session's queue) when every byte has arrived and only the last steps
    /// are left: the hash's tail, the sync to disk and the rename, which wait for the disk
    /// rather than the network. Not called for a download that ends before that. A caller
    /// that runs N downloads at once may start the next one then. Set before `resume()`.
    package var onReceivedAll: (@Sendable () -> Void)? {
        get { lock.withLock { _onReceivedAll } }
        set { lock.withLock { _onReceivedAll = newValue } }
    }

    /// Lets go of the finished file's directory.
    package func releaseFinishedFile() {
        lock.withLock { _finished = nil }
    }

    /// Renames the finished file within the directory it was written in: the one held open
    /// since the download began, so a directory swapped for a link meanwhile is never followed,
    /// and only while the name still holds the inode written. Without `replacing` nothing at
    /// `name` is touched; with it only a regular file is replaced. Returns the new location.
    package func renameFinishedFile(to name: String, replacing: Bool) throws(HaulError) -> URL {
        guard PlacementRoot.isValidName(name) else { throw .invalidFileName(name) }
        guard let finished = lock.withLock({ _finished }) else {
            throw .fileSystem(operation: "find the downloaded file", path: name, errno: ENOENT)
        }
        try finished.check()
        try finished.root.publish(finished.name, to: name, replacing: replacing)
        lock.withLock { _finished?.name = name }
        return URL(fileURLWithPath: finished.root.location(of: name))
    }

    /// Sets the finished file's modification time, through the directory it was written in and
    /// only while the name still holds the inode written. Returns whether it was set.
    @discardableResult
    package func setFinishedFileModificationTime(_ seconds: Int) -> Bool {
        guard let finished = lock.withLock({ _finished }), (try? finished.check()) != nil else { return false }
        var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        return utimensat(finished.root.fd, finished.name, &times, AT_SYMLINK_NOFOLLOW) == 0
    }
}
