#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The temp file a download writes into: positional writes at segment cursors, preallocation,
/// sync. A thin typed layer over the syscalls; errors carry the path. `PlacementRoot` opens it.
final class DataFile: @unchecked Sendable {
    // Unchecked: `fd` is set once in init and closed once in `close()`/deinit; writes from
    // several segments go to disjoint offsets through `pwrite`, which is safe to share.
    let path: String
    private(set) var fd: Int32
    private let calls: Syscalls

    /// Takes over `descriptor` (opened by `PlacementRoot`, the only code that opens files for
    /// writing), holding an exclusive advisory lock so a second download to the same place fails
    /// instead of interleaving its bytes. `path` is for messages.
    init(descriptor: Int32, path: String, calls: Syscalls = .system) throws(HaulError) {
        self.path = path
        self.calls = calls
        self.fd = descriptor
        try lock()
    }

    /// Empties the file (an earlier download's leftover, now ours) and makes it private.
    func truncate() throws(HaulError) {
        guard retryingInterrupts({ calls.ftruncate(fd, 0) }) == 0 else { throw Self.error("ftruncate", path, errno) }
        _ = fchmod(fd, 0o600)
    }

    deinit { close() }

    /// `flock(LOCK_EX | LOCK_NB)`: held until the descriptor closes (also when the process dies).
    private func lock() throws(HaulError) {
        guard retryingInterrupts({ flock(fd, LOCK_EX | LOCK_NB) }) == 0 else {
            let code = errno
            close()
            if code == EWOULDBLOCK { throw .fileInUse(path: path) }
            throw Self.error("flock", path, code)
        }
    }

    /// Device, inode and size of the open file (to tell a resumed file is the same one).
    func identity() throws(HaulError) -> ResumeData.FileIdentity {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Self.error("fstat", path, errno) }
        return ResumeData.FileIdentity(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino),
                                       size: Int64(info.st_size))
    }

    /// Sets the file's size to exactly `length` (cutting a longer file from an older version).
    func setLength(_ length: Int64) throws(HaulError) {
        guard retryingInterrupts({ calls.ftruncate(fd, length) }) == 0 else { throw Self.error("ftruncate", path, errno) }
    }

    /// A second descriptor for the same file, for syncing on another queue while this one is
    /// written and maybe closed. The caller closes it.
    func duplicateDescriptor() -> Int32 {
        dup(fd)
    }

    /// Sizes the file to `length` (cutting a longer, older version) and reserves the blocks so
    /// later writes cannot fail for space and the file is not fragmented. Where the filesystem
    /// cannot allocate, the sized (sparse) file is kept; a full disk is an error now.
    func preallocate(_ length: Int64) throws(HaulError) {
        try setLength(length)
        guard length > 0, retryingInterrupts({ calls.fallocate(fd, length) }) != 0 else { return }
        let reason = errno
        if reason == ENOSPC || reason == EDQUOT || reason == EFBIG { throw Self.error("fallocate", path, reason) }
    }

    /// Writes all of `buffer` at `offset`, continuing after short writes and EINTR.
    @inline(__always)
    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws(HaulError) {
        guard var base = buffer.baseAddress else { return }
        var remaining = buffer.count
        var position = offset
        while remaining > 0 {
            let written = calls.pwrite(fd, base, remaining, position)
            if written < 0 {
                if errno == EINTR { continue }
                throw Self.error("write", path, errno)
            }
            if written == 0 { throw Self.error("write", path, EIO) }
            remaining -= written
            position += Int64(written)
            base += written
        }
    }

    /// The index of the first byte of `bytes` that differs from the file at `offset`, or `nil`
    /// when all are the same. Reads back with `pread` (the page cache, as these bytes were just
    /// written); used for seams, so only a few KiB per request.
    func firstDifference(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(HaulError) -> Int? {
        let chunk = 64 << 10
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: min(chunk, max(1, bytes.count)), alignment: 16)
        defer { scratch.deallocate() }
        var done = 0
        while done < bytes.count {
            let want = min(scratch.count, bytes.count - done)
            let count = retryingInterrupts { pread(fd, scratch.baseAddress, want, off_t(offset) + off_t(done)) }
            guard count > 0 else { throw Self.error("read back", path, count < 0 ? errno : EIO) }
            if memcmp(scratch.baseAddress!, bytes.baseAddress! + done, count) != 0 {
                for index in 0..<count where scratch[index] != bytes[done + index] { return done + index }
            }
            done += count
        }
        return nil
    }

    /// SHA-256 (hex) of `count` bytes at `offset`, read with `pread`; `nil` if they cannot be
    /// read in full.
    func sha256(offset: Int64, count: Int) -> String? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer.withUnsafeMutableBytes { raw in
                pread(fd, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return nil }
            done += n
        }
        var hash = SHA256()
        hash.update(buffer)
        return hash.finalizeHex()
    }

    /// A new read-only descriptor for this same file (its own open file description, so it
    /// holds no lock), opened through `/proc/self/fd` and so never through a name; -1 on failure.
    func reopenForReading() -> Int32 {
        retryingInterrupts { open("/proc/self/fd/\(fd)", O_RDONLY | O_CLOEXEC) }
    }

    /// Flushes the data (not necessarily the metadata) to the device.
    func syncData() throws(HaulError) {
        guard retryingInterrupts({ fdatasync(fd) }) == 0 else { throw Self.error("fdatasync", path, errno) }
    }

    /// Closes the descriptor; later calls fail with EBADF.
    func close() {
        if fd >= 0 {
            _ = systemClose(fd)
            fd = -1
        }
    }

    static func error(_ operation: String, _ path: String, _ code: Int32) -> HaulError {
        if code == ENOSPC || code == EDQUOT { return .diskFull(path: path) }
        return .fileSystem(operation: operation, path: path, errno: code)
    }
}

@inline(__always)
func retryingInterrupts<T: FixedWidthInteger>(_ call: () -> T) -> T {
    while true {
        let result = call()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}

@inline(__always)
private func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.close(fd)
    #else
    Darwin.close(fd)
    #endif
}
