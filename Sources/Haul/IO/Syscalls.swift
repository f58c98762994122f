import CHaulSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The system calls the write path makes, as a value so tests can substitute failures
/// (ENOSPC after N bytes, short writes, EINTR) without a full disk.
struct Syscalls: Sendable {
    var pwrite: @Sendable (Int32, UnsafeRawPointer, Int, Int64) -> Int
    var fallocate: @Sendable (Int32, Int64) -> Int32
    var ftruncate: @Sendable (Int32, Int64) -> Int32

    /// The real calls. Each returns -1 and sets `errno` on failure, as the C calls do.
    static let system = Syscalls(
        pwrite: { fd, buffer, count, offset in
            #if canImport(Glibc)
            Glibc.pwrite(fd, buffer, count, off_t(offset))
            #else
            Darwin.pwrite(fd, buffer, count, offset)
            #endif
        },
        fallocate: { fd, length in
            #if os(Linux)
            if chaul_fallocate(fd, 0, off_t(length)) == 0 { return 0 }
            // Filesystems without fallocate: glibc's posix_fallocate emulates it.
            guard errno == EOPNOTSUPP || errno == ENOSYS else { return -1 }
            let result = posix_fallocate(fd, 0, off_t(length))
            if result == 0 { return 0 }
            errno = result
            return -1
            #else
            errno = EOPNOTSUPP
            return -1
            #endif
        },
        ftruncate: { fd, length in
            #if canImport(Glibc)
            Glibc.ftruncate(fd, off_t(length))
            #else
            Darwin.ftruncate(fd, length)
            #endif
        }
    )
}
