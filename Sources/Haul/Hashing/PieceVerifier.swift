import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Hashes pieces of a file that is still being written and compares them with a metalink's
/// piece digests, off the write path.
///
/// Runs on one serial queue of its own, shared by every download, beside the whole-file
/// `StreamingHasher`'s, so the two passes over the bytes use two cores when there are; it reads
/// bytes that are already written (usually from the page cache) through its own descriptor and
/// one buffer, and reuses one EVP context for every piece.
final class PieceVerifier: @unchecked Sendable {
    // Unchecked: the mutable state (`hash`, `buffer`, `fd`) is used on `queue` only.
    private static let queue = DispatchQueue(label: "haul.pieces")
    private var queue: DispatchQueue { Self.queue }
    private var fd: Int32
    private let digests: [UInt8]
    private let algorithm: HashAlgorithm
    private var hash: EVPHash
    private let buffer: UnsafeMutableRawBufferPointer

    /// Hashes through `descriptor` (a duplicate this verifier owns and closes) against
    /// `pieces`' digests.
    init(descriptor: Int32, pieces: Metalink.Pieces) {
        fd = descriptor
        digests = pieces.digests
        algorithm = pieces.algorithm
        hash = EVPHash(pieces.algorithm)
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 64)
    }

    deinit {
        if fd >= 0 { _ = close(fd) }
        buffer.deallocate()
    }

    /// Hashes `range` (piece `index`) and calls `completion` (on the hash queue) with whether
    /// it matched; `nil` when it could not be read.
    func verify(_ index: Int, range: Range<Int64>, completion: @escaping @Sendable (Bool?) -> Void) {
        queue.async { [self] in
            completion(check(index, range: range))
        }
    }

    private func check(_ index: Int, range: Range<Int64>) -> Bool? {
        hash.reset()
        var offset = range.lowerBound
        while offset < range.upperBound {
            let want = Int(min(Int64(buffer.count), range.upperBound - offset))
            let count = retryingInterrupts { pread(fd, buffer.baseAddress, want, off_t(offset)) }
            guard count > 0 else { return nil }
            hash.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            offset += Int64(count)
        }
        let size = algorithm.digestLength
        let out = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size])
        hash.digest(into: out)
        let start = index * size
        guard start + size <= digests.count else { return false }
        return digests.withUnsafeBytes { expected in
            memcmp(expected.baseAddress! + start, out.baseAddress!, size) == 0
        }
    }
}
