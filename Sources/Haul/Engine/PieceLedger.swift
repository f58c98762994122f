/// Which pieces of a download are verified against a metalink's piece hashes, which are being
/// hashed, and which sources wrote the bytes of each: a value with no I/O.
///
/// The transfer layer records every write (`wrote`), asks which pieces have all their bytes
/// on disk (`takeReady`), hashes them off the write path and reports `passed` or `failed`.
/// A failed piece blames every source that wrote into it; a source blamed `dropAfter` times is
/// to be dropped.
struct PieceLedger: Equatable, Sendable {
    enum State: UInt8, Equatable, Sendable {
        case missing
        case hashing
        case verified
    }

    /// The length of every piece but the last.
    let pieceLength: Int64
    /// The file's length.
    let length: Int64
    private(set) var states: [State]
    /// Sources that wrote into each piece since it was last judged: bit `i` for source `i`
    /// (sources past 63 share bit 63).
    private(set) var writers: [UInt64]
    /// Bad pieces each source delivered.
    private(set) var badBySource: [Int: Int] = [:]
    /// Failures of each piece (a piece that keeps failing from every source ends the download).
    private(set) var failuresByPiece: [Int: Int] = [:]
    /// Bad pieces before a source is dropped.
    let dropAfter: Int
    /// The first piece that may not be verified yet (everything before it is).
    private var firstUnverified = 0

    init(pieceLength: Int64, length: Int64, verified: [Int] = [], dropAfter: Int = 2) {
        self.pieceLength = max(1, pieceLength)
        self.length = length
        let count = length == 0 ? 0 : Int((length - 1) / max(1, pieceLength) + 1)
        states = Array(repeating: .missing, count: count)
        writers = Array(repeating: 0, count: count)
        self.dropAfter = max(1, dropAfter)
        for index in verified where index >= 0 && index < count { states[index] = .verified }
        advanceFirstUnverified()
    }

    var count: Int { states.count }

    /// The bytes of piece `index`.
    func range(of index: Int) -> Range<Int64> {
        let lower = Int64(index) * pieceLength
        return lower..<min(length, lower + pieceLength)
    }

    /// Indices of the verified pieces.
    var verified: [Int] { states.indices.filter { states[$0] == .verified } }

    var allVerified: Bool { firstUnverified >= states.count }

    /// The bytes from 0 that are all in verified pieces.
    var verifiedPrefix: Int64 { min(length, Int64(firstUnverified) * pieceLength) }

    /// Source `source` wrote `count` bytes at `offset` (hot path: a few array writes).
    @inline(__always)
    mutating func wrote(offset: Int64, count: Int, source: Int) {
        guard count > 0 else { return }
        let bit: UInt64 = 1 << UInt64(min(source, 63))
        var index = Int(offset / pieceLength)
        let last = Int((offset + Int64(count) - 1) / pieceLength)
        while index <= last, index < writers.count {
            writers[index] |= bit
            index += 1
        }
    }

    /// Pieces whose bytes all lie in `done` and that are neither verified nor being hashed;
    /// they are marked as being hashed.
    mutating func takeReady(done: [Range<Int64>]) -> [Int] {
        var ready: [Int] = []
        for range in done {
            var index = max(firstUnverified, Int((range.lowerBound + pieceLength - 1) / pieceLength))
            while index < states.count {
                let bytes = self.range(of: index)
                guard bytes.upperBound <= range.upperBound else { break }
                if bytes.lowerBound >= range.lowerBound, states[index] == .missing {
                    states[index] = .hashing
                    ready.append(index)
                }
                index += 1
            }
        }
        return ready
    }

    /// Piece `index` has its digest.
    mutating func passed(_ index: Int) {
        guard states.indices.contains(index), states[index] == .hashing else { return }
        states[index] = .verified
        writers[index] = 0
        advanceFirstUnverified()
    }

    /// Piece `index` did not have its digest: it is missing again. Returns the sources that
    /// wrote into it, and those of them now blamed `dropAfter` times or more.
    mutating func failed(_ index: Int) -> (blamed: [Int], toDrop: [Int]) {
        guard states.indices.contains(index), states[index] == .hashing else { return ([], []) }
        states[index] = .missing
        failuresByPiece[index, default: 0] += 1
        let mask = writers[index]
        writers[index] = 0
        var blamed: [Int] = []
        var toDrop: [Int] = []
        for source in 0..<64 where mask & (1 << UInt64(source)) != 0 {
            blamed.append(source)
            badBySource[source, default: 0] += 1
            if badBySource[source, default: 0] >= dropAfter { toDrop.append(source) }
        }
        return (blamed, toDrop)
    }

    /// The piece is being fetched again (its bytes on disk no longer count); a hash of it that
    /// is still running is ignored when it comes back.
    mutating func forget(_ index: Int) {
        guard states.indices.contains(index), states[index] != .verified else { return }
        states[index] = .missing
    }

    /// The file started over: nothing is verified.
    mutating func reset() {
        for index in states.indices { states[index] = .missing }
        for index in writers.indices { writers[index] = 0 }
        firstUnverified = 0
    }

    private mutating func advanceFirstUnverified() {
        while firstUnverified < states.count, states[firstUnverified] == .verified { firstUnverified += 1 }
    }
}
