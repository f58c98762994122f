/// Entry points for the benchmark package (`@_spi(Benchmarks) import Haul`): they run the
/// internal engine values without exposing them as API.
@_spi(Benchmarks)
public enum EngineBenchmarks {
    /// Plans a download of `length` bytes over `connections`, then lets connections finish and
    /// steal until nothing is left to split. Returns the number of segments made.
    public static func planAndSteal(length: Int64, connections: Int, minimumSplit: Int64) -> Int {
        var plan = SegmentPlan(minimumSplit: minimumSplit)
        _ = plan.split(length: length, connections: connections)
        var finishing = 0
        while finishing < plan.segments.count {
            let segment = plan.segments[finishing]
            if segment.state == .active {
                _ = plan.advance(segment.id, by: Int(segment.remaining))
                _ = plan.finish(segment.id)
                _ = plan.steal() ?? plan.addTwin(minimumTail: minimumSplit / 8)
            }
            finishing += 1
        }
        return plan.segments.count
    }

    /// Drives a state machine through a whole download in `chunk`-sized writes (probe, split,
    /// every response head, every write, every end). Returns the actions produced.
    public static func runStateMachine(length: Int64, connections: Int, chunk: Int) -> Int {
        var machine = DownloadStateMachine(options: .init(connections: connections, minimumSplit: 1 << 20))
        var pending = machine.start()
        var produced = pending.count
        while let action = pending.popLast() {
            guard case .start(let request) = action else { continue }
            let through = request.through ?? (length - 1)
            let head = ResponseHead(status: 206, contentRange: ContentRange(first: request.from, last: through,
                                                                             completeLength: length),
                                    etag: "\"bench\"")
            var more = machine.received(head, for: request.segment)
            while true {
                let count: Int
                switch machine.step(for: request.segment, available: chunk) {
                case .stop: count = 0
                case .write(_, let n), .verify(_, let n): count = n
                }
                if count == 0 { break }
                machine.advance(request.segment, by: count)
            }
            more += machine.transferEnded(request.segment, .completed)
            produced += more.count
            pending.append(contentsOf: more)
        }
        return produced
    }

    /// The SHA-256 of `bytes` through the engine's OpenSSL EVP hasher (which is not API).
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var hash = SHA256()
        hash.update(bytes)
        return hash.finalize()
    }

    /// A resume blob like a 16-segment download's halfway point, encoded.
    public static func sampleResumeData(segments: Int) -> ResumeData {
        let length: Int64 = 1 << 30
        let size = length / Int64(segments)
        let done = (0..<Int64(segments)).map { ($0 * size)..<($0 * size + size / 2) }
        return ResumeData(url: URL(string: "https://example.org/big.iso")!, finalURL: nil, headers: [["X-A", "b"]],
                          etag: "\"e\"", lastModified: nil, length: length,
                          tempFile: .init(path: "/tmp/x", device: 1, inode: 2, size: length),
                          doneRanges: done, syncedRanges: Array(done.prefix(segments / 2)), bootID: "boot",
                          destination: "/data/big.iso", expectedSHA256: nil)
    }
}

import struct Foundation.URL
