import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 (or SHA-512) of a file that is still being written, fed from its contiguous done prefix.
///
/// On one serial queue shared by every download in the process, it `pread`s bytes that are
/// already final (usually from the page cache) into an EVP context through one shared 256 KiB buffer,
/// so memory stays bounded and, when the download ends, only the tail is left to hash. A
/// resumed download starts at byte 0 and so rehashes its prefix from disk.
///
/// One queue, not one per download: a core hashes faster than loopback delivers, and a queue
/// per download spread 16 concurrent downloads over 16 threads, each with its own malloc arena
/// (twice the resident memory in the batch benchmark).
final class StreamingHasher: @unchecked Sendable {
    // Unchecked: every mutable property is used on `queue` only.
    private static let sharedQueue = DispatchQueue(label: "haul.hash")
    private var queue: DispatchQueue { Self.sharedQueue }
    private let path: String
    private var fd: Int32
    private var algorithm: HashAlgorithm
    private var hash: EVPHash?
    private var hashed: Int64 = 0
    private var target: Int64 = 0
    private var failure: Int32 = 0
    /// One read buffer for every download: the shared queue is serial, so only one pump uses it
    /// at a time, and nothing is allocated per read.
    nonisolated(unsafe) private static let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10,
                                                                                          alignment: 64)

    /// Hashes through `descriptor` (a duplicate this hasher owns and closes), so what it reads
    /// is the download's own file whatever happens to names; `path` is for messages.
    init(descriptor: Int32, path: String, algorithm: HashAlgorithm = .sha256) {
        self.fd = descriptor
        self.path = path
        self.algorithm = algorithm
        self.hash = EVPHash(algorithm)
    }

    deinit {
        if fd >= 0 { _ = close(fd) }
    }

    /// Bytes `0..<end` are on disk and will not change: hash up to there.
    func advance(to end: Int64) {
        queue.async { [self] in
            guard end > target else { return }
            target = end
            pump()
        }
    }

    /// The file started over (it changed on the server): forget what was hashed.
    func reset() {
        queue.async { [self] in
            hash = EVPHash(algorithm)
            hashed = 0
            target = 0
            failure = 0
        }
    }

    /// Starts over with another function (a metalink the server names has only SHA-512).
    func reset(algorithm: HashAlgorithm) {
        queue.async { [self] in
            self.algorithm = algorithm
            hash = EVPHash(algorithm)
            hashed = 0
            target = 0
            failure = 0
        }
    }

    /// Hashes the rest up to `length` and hands back the digest (hex).
    func finish(length: Int64, completion: @escaping @Sendable (Result<String, HaulError>) -> Void) {
        queue.async { [self] in
            target = max(target, length)
            pump()
            if failure != 0 || hashed != length {
                completion(.failure(DataFile.error("read back for hashing", path, failure != 0 ? failure : EIO)))
                return
            }
            var taken = hash.take()
            let digest = taken?.digest().hexString ?? ""
            if fd >= 0 {
                _ = close(fd)
                fd = -1
            }
            completion(.success(digest))
        }
    }

    private func pump() {
        guard failure == 0 else { return }
        guard fd >= 0 else { failure = EBADF; return }
        let buffer = Self.buffer
        while hashed < target {
            let want = Int(min(Int64(buffer.count), target - hashed))
            let count = retryingInterrupts { pread(fd, buffer.baseAddress, want, off_t(hashed)) }
            guard count > 0 else {
                failure = count < 0 ? errno : EIO
                return
            }
            hash?.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            hashed += Int64(count)
        }
    }
}
