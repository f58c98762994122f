import CHaulSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one owner of where bytes land: a directory held open as a descriptor, and every name
/// resolved inside it.
///
/// Only this type creates, opens for writing, renames or removes files. Names are single path
/// components (never `..`, never containing `/`); nothing is opened through a symbolic link
/// (`O_NOFOLLOW`); only regular files owned by this user with one link are reused or replaced;
/// the final rename never replaces anything unless asked to, and then only a regular file. The
/// root keeps referring to the same directory if it is moved or renamed, as it holds a
/// descriptor, not a path; `path` is only for messages.
package final class PlacementRoot: @unchecked Sendable {
    // Unchecked: `fd` is set once in init and closed in deinit; every call is a syscall on it.
    /// The directory as the caller named it (for messages only).
    package let path: String
    let fd: Int32
    /// This directory's lock for `changingNames`.
    private let names: NSLock

    /// Opens `directory` (the caller's own choice of place, so a symbolic link in it is followed).
    package init(directory: String) throws(HaulError) {
        let named = directory.isEmpty ? "." : directory
        path = named
        let opened = retryingInterrupts { open(named, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard opened >= 0 else {
            let code = errno
            if code == ENOTDIR { throw .fileSystem(operation: "open the directory (it is a file)", path: named, errno: code) }
            throw DataFile.error("open the directory", named, code)
        }
        fd = opened
        names = Self.nameLock(for: opened)
    }

    /// Takes ownership of `descriptor`, an open directory known to the caller as `path`.
    init(descriptor: Int32, path: String) {
        self.path = path
        fd = descriptor
        names = Self.nameLock(for: descriptor)
    }

    deinit { _ = Glibc.close(fd) }

    /// The directory reached by `components` below this one (each a checked single name),
    /// made (0755) where missing when `creating`. Every step is opened with `O_NOFOLLOW`: a
    /// symbolic link, a file or anything else in the way is refused, never followed, so the
    /// result is always inside this root.
    package func subdirectory(_ components: [String], creating: Bool) throws(HaulError) -> PlacementRoot {
        var made: [MadeDirectory] = []
        return try subdirectory(components, creating: creating, made: &made)
    }

    /// As `subdirectory(_:creating:)`, appending each directory it made to `made` (outermost
    /// first), so that a download that fails can remove them again.
    package func subdirectory(_ components: [String], creating: Bool,
                              made: inout [MadeDirectory]) throws(HaulError) -> PlacementRoot {
        var current = self
        for component in components {
            try current.checked(component)
            let location = current.location(of: component)
            if creating {
                if mkdirat(current.fd, component, 0o755) == 0 {
                    made.append(MadeDirectory(parent: current, name: component))
                } else if errno != EEXIST {
                    throw DataFile.error("create the directory", location, errno)
                }
            }
            let opened = retryingInterrupts {
                openat(current.fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            guard opened >= 0 else {
                let code = errno
                if code == ELOOP || code == ENOTDIR {
                    throw .fileSystem(operation: "enter the directory (something that is not a directory is in the way; "
                        + "it was not followed)", path: location, errno: code)
                }
                throw DataFile.error("open the directory", location, code)
            }
            current = PlacementRoot(descriptor: opened, path: location)
        }
        return current
    }

    /// Whether `name` is one path component that stays in the directory.
    package static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.utf8.contains(UInt8(ascii: "/")) && !name.utf8.contains(0)
            && name.utf8.count <= Int(NAME_MAX)
    }

    /// Where `name` is, for messages and for handing a finished file to the caller.
    package func location(of name: String) -> String {
        path.hasSuffix("/") ? path + name : path + "/" + name
    }

    // MARK: Looking

    /// What is at `name` now, without following a symbolic link; `nil` when nothing is.
    package func status(of name: String) throws(HaulError) -> stat? {
        try checked(name)
        var info = stat()
        guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw DataFile.error("stat", location(of: name), errno)
        }
        return info
    }

    /// Bytes the current user may still allocate in the directory's file system.
    func freeBytes() -> Int64? {
        var info = statvfs()
        guard fstatvfs(fd, &info) == 0 else { return nil }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    // MARK: Files

    /// A partial file at `name`, empty and ours alone: an earlier download's leftover (a
    /// regular file of ours with one link) is reused once no one holds its lock; anything
    /// else there (a symbolic link, another user's file, a hard link) is unlinked, never
    /// followed or written through. Mode 0600.
    /// `displayPath` is what messages about the file call it (the destination a person chose).
    func createFile(_ name: String, displayPath: String? = nil, calls: Syscalls = .system) throws(HaulError) -> DataFile {
        try checked(name)
        let path = displayPath ?? location(of: name)
        // Made first, `O_EXCL`: a fresh name (the usual case) needs no look beforehand, and a
        // file another process makes meanwhile is never taken for a leftover.
        var (opened, code) = makeFile(name)
        if opened < 0, code == EEXIST {
            if let existing = try status(of: name) {
                if Self.isOwnRegularFile(existing) {
                    // An earlier download's leftover, or another download's file: its lock answers.
                    let file = try openExisting(name, displayPath: displayPath, calls: calls)
                    try file.truncate()
                    return file
                }
                if existing.st_mode & S_IFMT == S_IFDIR { throw .notARegularFile(path: path) }
                remove(name)
            }
            (opened, code) = makeFile(name)
            // Made again between the removal and this create: another download writes here.
            if opened < 0, code == EEXIST { throw .fileInUse(path: path) }
        }
        guard opened >= 0 else { throw DataFile.error("create", path, code) }
        return try DataFile(descriptor: opened, path: path, calls: calls)
    }

    /// `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`, mode 0600, under the name lock.
    private func makeFile(_ name: String) -> (result: Int32, errno: Int32) {
        changingNames { retryingInterrupts { openat(fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) } }
    }

    /// Runs `change`, one call that adds or removes a name in this directory, while no other
    /// thread of this process changes a name in it, and returns its result with its `errno`.
    /// The kernel holds a directory's lock while it makes a file, and ext4 may take long to
    /// find an inode (it passes over recently freed ones one by one, so making files soon after
    /// many were deleted is slow); other threads' links and renames in that directory meanwhile
    /// spin on the lock. In a batch of 200 files made 16 at a time that spinning was 7% of the
    /// process's CPU time; waiting here sleeps instead. The lock is the directory's (one of 64,
    /// chosen by device and inode), as the kernel's is: a slow directory holds up names in
    /// itself and, now and then, in a directory that shares its lock, never the whole file
    /// system.
    private func changingNames(_ change: () -> Int32) -> (result: Int32, errno: Int32) {
        names.withLock {
            let result = change()
            return (result, errno)
        }
    }

    /// The lock for the directory open at `descriptor`: one of a fixed set, chosen by the
    /// directory's device and inode, so two roots of one directory share it and memory stays
    /// bounded however many directories a long-running process uses (two directories that
    /// share a lock only wait for each other now and then).
    private static func nameLock(for descriptor: Int32) -> NSLock {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return nameLocks[0] }
        var hasher = Hasher()
        hasher.combine(UInt64(info.st_dev))
        hasher.combine(UInt64(info.st_ino))
        return nameLocks[Int(UInt(bitPattern: hasher.finalize()) % UInt(nameLocks.count))]
    }

    private static let nameLocks = (0..<64).map { _ in NSLock() }

    /// The partial file at `name` as an earlier run left it: a regular file of ours with one
    /// link, opened without following a symbolic link, and locked.
    func openExisting(_ name: String, displayPath: String? = nil, calls: Syscalls = .system) throws(HaulError) -> DataFile {
        try checked(name)
        // O_NONBLOCK: a fifo planted here must not block the open; it is refused below.
        let opened = retryingInterrupts { openat(fd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) }
        guard opened >= 0 else {
            let code = errno
            if code == ELOOP || code == ENXIO { throw .notARegularFile(path: displayPath ?? location(of: name)) }
            throw DataFile.error("open", displayPath ?? location(of: name), code)
        }
        var info = stat()
        guard fstat(opened, &info) == 0, Self.isOwnRegularFile(info) else {
            _ = Glibc.close(opened)
            throw .notARegularFile(path: displayPath ?? location(of: name))
        }
        _ = fcntl(opened, F_SETFL, fcntl(opened, F_GETFL) & ~O_NONBLOCK)
        return try DataFile(descriptor: opened, path: displayPath ?? location(of: name), calls: calls)
    }

    /// Puts the open `file` (whose name here is `from`) at `to` in `target`: the destination
    /// becomes a link to the very inode that was written and hashed (`linkat` through
    /// `/proc/self/fd`), whatever was swapped in at `from` meanwhile; then `from` is unlinked if
    /// it is still that inode. Without `replacing` nothing at `to` is touched; with it only a
    /// regular file is replaced.
    func publish(_ file: DataFile, named from: String, to: String, in target: PlacementRoot? = nil,
                 replacing: Bool) throws(HaulError) {
        try checked(from)
        let target = target ?? self
        try target.checked(to)
        let destination = target.location(of: to)
        let source = "/proc/self/fd/\(file.fd)"
        var existing = try target.status(of: to)
        if let existing {
            guard existing.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: destination) }
            guard replacing else { throw .destinationExists(path: destination) }
        }
        let written = try file.identity()
        // Written private (0600); published with the mode any new file of this process gets.
        _ = fchmod(file.fd, 0o666 & ~Self.processUmask)
        if existing == nil {
            let linked = target.changingNames { linkat(AT_FDCWD, source, target.fd, to, AT_SYMLINK_FOLLOW) }
            if linked.result == 0 {
                unlinkIfSame(from, device: written.device, inode: written.inode)
                return
            }
            if linked.errno == EEXIST, !replacing { throw .destinationExists(path: destination) }
        }
        // Replacing (or the file appeared meanwhile): link under a side name, then rename over.
        let side = "." + String(UInt64.random(in: 0...UInt64.max), radix: 36) + ".haul-new"
        let sideLinked = target.changingNames { linkat(AT_FDCWD, source, target.fd, side, AT_SYMLINK_FOLLOW) }
        guard sideLinked.result == 0 else {
            throw DataFile.error("link into place", destination, sideLinked.errno)
        }
        existing = try target.status(of: to)
        if let existing, existing.st_mode & S_IFMT != S_IFREG || !replacing {
            target.remove(side)
            throw existing.st_mode & S_IFMT != S_IFREG ? .notARegularFile(path: destination) : .destinationExists(path: destination)
        }
        let renamed = target.changingNames { renameat(target.fd, side, target.fd, to) }
        guard renamed.result == 0 else {
            target.remove(side)
            throw DataFile.error("rename into place", destination, renamed.errno)
        }
        unlinkIfSame(from, device: written.device, inode: written.inode)
    }

    /// Unlinks `name` only while it is still the inode `device`/`inode`.
    private func unlinkIfSame(_ name: String, device: UInt64, inode: UInt64) {
        guard let now = try? status(of: name), UInt64(now.st_dev) == device, UInt64(now.st_ino) == inode else { return }
        remove(name)
    }

    /// The process's file mode creation mask, read without changing it (`umask(2)` sets it,
    /// which would race with other threads creating files): the `Umask:` line of
    /// `/proc/self/status`, else the common 022.
    static let processUmask: mode_t = {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
              let mask = mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8) else {
            return 0o022
        }
        return mask & 0o777
    }()

    /// Moves the file at `from` to `to` in `target` (this directory by default). Without
    /// `replacing`, an existing `to` is never touched (`renameat2(RENAME_NOREPLACE)`); with it,
    /// only a regular file is replaced, never a directory, a link or a device.
    package func publish(_ from: String, to: String, in target: PlacementRoot? = nil, replacing: Bool) throws(HaulError) {
        try checked(from)
        let target = target ?? self
        let destination = target.location(of: to)
        if let existing = try target.status(of: to) {
            guard existing.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: destination) }
            guard replacing else { throw .destinationExists(path: destination) }
            guard renameat(fd, from, target.fd, to) == 0 else { throw DataFile.error("rename into place", destination, errno) }
            return
        }
        if chaul_renameat_noreplace(fd, from, target.fd, to) == 0 { return }
        let code = errno
        if code == EEXIST { throw .destinationExists(path: destination) }
        guard code == ENOSYS || code == EINVAL else { throw DataFile.error("rename into place", destination, code) }
        // No renameat2 here: link + unlink never replaces either.
        guard linkat(fd, from, target.fd, to, 0) == 0 else {
            let code = errno
            if code == EEXIST { throw .destinationExists(path: destination) }
            throw DataFile.error("rename into place", destination, code)
        }
        _ = unlinkat(fd, from, 0)
    }

    /// Removes the entry `name` (a symbolic link is removed itself, never its target; a
    /// directory is left alone).
    package func remove(_ name: String) {
        guard Self.isValidName(name) else { return }
        _ = changingNames { unlinkat(fd, name, 0) }
    }

    /// Makes the private directory `name` (0700) and returns it held open, never through a link.
    package func makeDirectory(_ name: String) throws(HaulError) -> PlacementRoot {
        try checked(name)
        guard mkdirat(fd, name, 0o700) == 0 else { throw DataFile.error("create the directory", location(of: name), errno) }
        return try PlacementRoot(directory: location(of: name))
    }

    /// Removes the empty directory `name` (never a link or a file).
    package func removeDirectory(_ name: String) {
        guard Self.isValidName(name) else { return }
        _ = unlinkat(fd, name, AT_REMOVEDIR)
    }

    /// Flushes the directory's entries (after a rename that must survive a power cut).
    package func sync() {
        _ = fsync(fd)
    }

    /// A log file `name` to append to (created 0600 if missing, never through a link); the
    /// caller owns the returned descriptor.
    package func openLog(_ name: String) throws(HaulError) -> Int32 {
        try checked(name)
        let opened = retryingInterrupts {
            openat(fd, name, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0o600)
        }
        guard opened >= 0 else { throw DataFile.error("open", location(of: name), errno) }
        var info = stat()
        guard fstat(opened, &info) == 0, Self.isOwnRegularFile(info, links: nil) else {
            _ = Glibc.close(opened)
            throw .notARegularFile(path: location(of: name))
        }
        _ = fcntl(opened, F_SETFL, fcntl(opened, F_GETFL) & ~O_NONBLOCK)
        return opened
    }

    // MARK: Small files (journals)

    /// Replaces `name` with `data` atomically: written to a side name created afresh (0600,
    /// never through a link), then renamed over `name`. When `durable`, the bytes and the
    /// rename reach the disk before this returns.
    package func writeAtomically(_ name: String, data: Data, durable: Bool) throws(HaulError) {
        // A fresh side name each time: nothing planted at a fixed name can block the write.
        let tag = "." + String(UInt64.random(in: 0...UInt64.max), radix: 36) + ".new"
        let side = String(name.utf8.prefix(Int(NAME_MAX) - tag.utf8.count))! + tag
        try checked(side)
        let opened = retryingInterrupts { openat(fd, side, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        guard opened >= 0 else { throw DataFile.error("create", location(of: side), errno) }
        var failure: Int32 = 0
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(opened, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += written
            }
        }
        if failure == 0, durable, retryingInterrupts({ fsync(opened) }) != 0 { failure = errno }
        _ = Glibc.close(opened)
        guard failure == 0 else {
            remove(side)
            throw DataFile.error("write", location(of: side), failure)
        }
        guard renameat(fd, side, fd, name) == 0 else {
            let code = errno
            remove(side)
            throw DataFile.error("rename", location(of: name), code)
        }
        if durable { sync() }
    }

    /// The bytes of `name` if it is a regular file of ours (never through a link), at most
    /// `limit` bytes; `nil` otherwise.
    package func read(_ name: String, limit: Int = 4 << 20) -> Data? {
        guard Self.isValidName(name) else { return nil }
        let opened = retryingInterrupts { openat(fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) }
        guard opened >= 0 else { return nil }
        defer { _ = Glibc.close(opened) }
        var info = stat()
        guard fstat(opened, &info) == 0, Self.isOwnRegularFile(info, links: nil), info.st_size <= limit else { return nil }
        var data = Data(count: Int(info.st_size))
        var done = 0
        let ok = data.withUnsafeMutableBytes { buffer -> Bool in
            while done < buffer.count {
                let count = retryingInterrupts { Glibc.read(opened, buffer.baseAddress! + done, buffer.count - done) }
                guard count > 0 else { return count == 0 }
                done += count
            }
            return true
        }
        return ok ? data.prefix(done) : nil
    }

    // MARK: Private

    fileprivate func checked(_ name: String) throws(HaulError) {
        guard Self.isValidName(name) else { throw .invalidFileName(name) }
    }

    /// A regular file owned by this user, with `links` hard links (any number for `nil`).
    private static func isOwnRegularFile(_ info: stat, links: Int? = 1) -> Bool {
        info.st_mode & S_IFMT == S_IFREG && info.st_uid == geteuid() && links.map { Int(info.st_nlink) == $0 } ?? true
    }
}
