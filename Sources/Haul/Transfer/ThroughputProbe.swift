import CCurl
import Dispatch

/// Measures a server without keeping its bytes: N range requests at once, each for its own
/// slice from the start of the file, counted and dropped in the write callback, stopped when the
/// time limit is reached.
final class ThroughputProbe: @unchecked Sendable {
    // Unchecked: a run's state is used on `multi.queue` only.
    struct Outcome: Sendable {
        var head: ResponseHead?
        var firstByte: Duration?
        var bytes: Int64 = 0
        var elapsed: Duration = .zero
        var error: String?
        /// The bytes themselves, when kept (`fetch`).
        var kept: [UInt8]?

        var bytesPerSecond: Double {
            elapsed > .zero ? Double(bytes) / elapsed.secondsValue : 0
        }
    }

    private let multi: CurlMulti
    private let options: RequestOptions

    init(multi: CurlMulti, options: RequestOptions) {
        self.multi = multi
        self.options = options
    }

    func run(connections: Int, bytesEach: Int64, limit: Duration) async -> Outcome {
        await withCheckedContinuation { continuation in
            multi.queue.async { [self] in
                Run(multi: multi, options: options, connections: connections, bytesEach: bytesEach, limit: limit) {
                    continuation.resume(returning: $0)
                }.start()
            }
        }
    }

    /// Bytes `from..<from + count` of the file over one connection, kept in memory (a few KiB:
    /// comparing a file on disk with the server's).
    func fetch(from: Int64, count: Int64, limit: Duration) async -> Outcome {
        await withCheckedContinuation { continuation in
            multi.queue.async { [self] in
                Run(multi: multi, options: options, connections: 1, bytesEach: count, limit: limit, offset: from,
                    keeps: true) {
                    continuation.resume(returning: $0)
                }.start()
            }
        }
    }

    /// One measurement; confined to the multi's queue.
    private final class Run: @unchecked Sendable {
        // Unchecked: used on `multi.queue` only, like everything that touches curl.
        let multi: CurlMulti
        let options: RequestOptions
        let connections: Int
        let bytesEach: Int64
        let limit: Duration
        var completion: ((Outcome) -> Void)?
        var outcome = Outcome()
        var easies: [CurlEasy] = []
        var open = 0
        let begun = ContinuousClock.now
        var timer: DispatchWorkItem?
        var keepAlive: Run?
        let offset: Int64

        init(multi: CurlMulti, options: RequestOptions, connections: Int, bytesEach: Int64, limit: Duration,
             offset: Int64 = 0, keeps: Bool = false, completion: @escaping (Outcome) -> Void) {
            self.offset = offset
            if keeps { outcome.kept = [] }
            self.multi = multi
            self.options = options
            self.connections = connections
            self.bytesEach = bytesEach
            self.limit = limit
            self.completion = completion
        }

        func start() {
            keepAlive = self
            for index in 0..<connections {
                let from = offset + Int64(index) * bytesEach
                let easy = CurlEasy(options: options, range: "\(from)-\(from + bytesEach - 1)", extraHeaders: [],
                                    multi: multi)
                var received: Int64 = 0
                easy.onHead = { [unowned self] head in
                    if outcome.head == nil { outcome.head = head }
                }
                easy.onBody = { [unowned self] buffer in
                    if outcome.firstByte == nil { outcome.firstByte = ContinuousClock.now - begun }
                    let take = Int(min(Int64(buffer.count), max(0, bytesEach - received)))
                    received += Int64(take)
                    outcome.bytes += Int64(take)
                    if outcome.kept != nil, let base = buffer.baseAddress {
                        outcome.kept?.append(contentsOf: UnsafeRawBufferPointer(start: base, count: take))
                    }
                    return take
                }
                easy.onDone = { [unowned self] code, message in
                    open -= 1
                    if code != CURLE_OK, code != CURLE_WRITE_ERROR, received == 0, outcome.error == nil {
                        outcome.error = message
                    }
                    if let status = outcome.head?.status, status >= 400, outcome.error == nil {
                        outcome.error = "HTTP \(status)"
                    }
                    if open == 0 { finish() }
                }
                easies.append(easy)
                open += 1
                multi.add(easy)
            }
            let item = DispatchWorkItem { [weak self] in self?.finish() }
            timer = item
            multi.queue.asyncAfter(deadline: .now() + limit.dispatchInterval, execute: item)
        }

        func finish() {
            guard let completion else { return }
            self.completion = nil
            timer?.cancel()
            outcome.elapsed = ContinuousClock.now - begun
            for easy in easies { multi.remove(easy) }
            completion(outcome)
            multi.queue.async { [self] in keepAlive = nil }
        }
    }
}
