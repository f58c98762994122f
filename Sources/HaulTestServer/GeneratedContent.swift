import Haul

/// Deterministic bytes of any size, generated on the fly so tests can verify huge files without
/// storing them: byte `i` depends only on `seed` and `i`.
public struct GeneratedContent: Sendable, Equatable {
    public var size: Int64
    public var seed: UInt64
    /// Ranges whose bytes come from another seed (a version that differs from another only there).
    public var patches: [Patch] = []

    /// Bytes `from..<to` generated from `seed` instead of the content's own seed.
    public struct Patch: Sendable, Equatable, Decodable {
        public var from: Int64
        public var to: Int64
        public var seed: UInt64
        public init(from: Int64, to: Int64, seed: UInt64) {
            self.from = from
            self.to = to
            self.seed = seed
        }
    }

    public init(size: Int64, seed: UInt64 = 1, patches: [Patch] = []) {
        self.size = size
        self.seed = seed
        self.patches = patches
    }

    /// Fills `buffer` with the bytes starting at `offset` (the buffer must fit inside `size`).
    public func fill(_ buffer: UnsafeMutableRawBufferPointer, from offset: Int64) {
        fillBase(buffer, from: offset)
        let end = offset + Int64(buffer.count)
        for patch in patches where patch.from < end && patch.to > offset {
            let lower = max(patch.from, offset)
            let upper = min(patch.to, end)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[Int(lower - offset)..<Int(upper - offset)])
            GeneratedContent(size: size, seed: patch.seed).fillBase(slice, from: lower)
        }
    }

    private func fillBase(_ buffer: UnsafeMutableRawBufferPointer, from offset: Int64) {
        var position = offset
        var index = 0
        while index < buffer.count {
            let block = UInt64(position >> 3)
            var word = Self.mix(seed &+ block &* 0x9E37_79B9_7F4A_7C15)
            let skip = Int(position & 7)
            word >>= UInt64(skip * 8)
            let take = min(8 - skip, buffer.count - index)
            for _ in 0..<take {
                buffer[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
            position += Int64(take)
        }
    }

    /// The bytes `range` as an array (for small checks).
    public func bytes(_ range: Range<Int64>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(range.count))
        out.withUnsafeMutableBytes { fill($0, from: range.lowerBound) }
        return out
    }

    /// SHA-256 (lowercase hex) of the whole content, computed in 1 MiB pieces.
    public var sha256: String {
        var hash = SHA256()
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 8)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < size {
            let count = Int(min(Int64(chunk), size - offset))
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
            fill(slice, from: offset)
            hash.update(UnsafeRawBufferPointer(slice))
            offset += Int64(count)
        }
        return hash.finalizeHex()
    }

    /// splitmix64's finaliser: a cheap, well-mixed function of one word.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
