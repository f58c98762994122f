/// The sources of one download (the URL and its mirrors) and how fast each has been, as a
/// value. New requests go to the enabled source with the fewest running requests per unit of
/// measured speed, so connections spread in proportion to speed; a source that failed or
/// disagreed about the file is dropped.
struct MirrorSet: Equatable, Sendable {
    struct Mirror: Equatable, Sendable {
        var enabled = true
        /// Requests running against this source now.
        var active = 0
        /// Bytes per second of one connection to this source (moving average), once measured.
        var speed: Double?
        /// Why it was dropped.
        var dropReason: String?
        /// Whether a response from it has been checked against the file's length and validators.
        var validated = false
        /// Its ETag and Last-Modified are its own (another server's copy of the file, proven by
        /// hashes): they are not compared with the first source's and no `If-Range` goes to it.
        var ownValidators = false
    }

    private(set) var mirrors: [Mirror]

    init(count: Int) {
        mirrors = Array(repeating: Mirror(), count: max(1, count))
        mirrors[0].validated = true
    }

    var enabledCount: Int { mirrors.filter(\.enabled).count }

    /// The first source still in use (where a probe goes).
    var firstEnabled: Int { mirrors.firstIndex(where: \.enabled) ?? 0 }

    /// The source for a new request: least loaded for its speed; unmeasured sources count as
    /// fast as the fastest measured one, so every source gets tried.
    func pick(avoiding: UInt64 = 0) -> Int {
        let fastest = mirrors.compactMap(\.speed).max() ?? 1
        var best = 0
        var bestScore = Double.infinity
        // Sources to avoid are skipped while another is enabled.
        let others = mirrors.indices.contains { mirrors[$0].enabled && avoiding & (1 << UInt64(min($0, 63))) == 0 }
        for (index, mirror) in mirrors.enumerated() where mirror.enabled {
            if others, avoiding & (1 << UInt64(min(index, 63))) != 0 { continue }
            let score = Double(mirror.active + 1) / max(mirror.speed ?? fastest, 1)
            if score < bestScore {
                bestScore = score
                best = index
            }
        }
        return best
    }

    /// Adds `count` sources (a server named them as mirrors); returns the first new index.
    mutating func add(_ count: Int, ownValidators: Bool = false) -> Int {
        let first = mirrors.count
        var mirror = Mirror()
        mirror.ownValidators = ownValidators
        mirrors += Array(repeating: mirror, count: max(0, count))
        return first
    }

    /// Every source but the first is identified by hashes from now on (piece hashes check
    /// every byte it delivers), not by validators.
    mutating func identifyByHashes() {
        for index in mirrors.indices.dropFirst() { mirrors[index].ownValidators = true }
    }

    mutating func started(_ index: Int) { mirrors[index].active += 1 }

    mutating func ended(_ index: Int) { mirrors[index].active = max(0, mirrors[index].active - 1) }

    mutating func validated(_ index: Int) { mirrors[index].validated = true }

    /// Folds a connection's measured speed into the source's average.
    mutating func measured(_ index: Int, bytesPerSecond: Double) {
        let previous = mirrors[index].speed
        mirrors[index].speed = previous.map { 0.7 * $0 + 0.3 * bytesPerSecond } ?? bytesPerSecond
    }

    /// Stops using a source for this download; the last enabled one is never dropped.
    mutating func drop(_ index: Int, reason: String) -> Bool {
        guard mirrors[index].enabled, enabledCount > 1 else { return false }
        mirrors[index].enabled = false
        mirrors[index].dropReason = reason
        return true
    }
}
