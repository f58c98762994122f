/// Chunked work and the connection count: how many requests run (`ConnectionGovernor`) and
/// which bytes each new one takes (the next chunk in file order).
extension DownloadStateMachine {
    /// Adapting: from one connection (one per source) up to the ceiling; otherwise the ceiling.
    static func governor(for options: Options) -> ConnectionGovernor {
        ConnectionGovernor(ceiling: options.connections, floor: options.adaptsConnections ? options.mirrors : options.connections)
    }

    /// Whether work is handed out in chunks (`Options.chunked`, or adapting).
    var isChunked: Bool { options.chunked || options.adaptsConnections }

    /// Chunked: starts requests until `governor.target` run (pending chunks in file order, then
    /// halves of the largest ranges left).
    mutating func fill() -> [Action] {
        guard rangesSupported, !singleStream, !isFinished, !awaitingDescription else { return [] }
        var actions: [Action] = []
        while requests.count < governor.target,
              let id = plan.takePending(chunk: nextChunk())
                ?? (plan.releaseTail(keeping: nextChunk()) ? plan.takePending(chunk: nextChunk()) : nil) ?? plan.steal() {
            actions.append(start(segment: id, kind: .range))
        }
        return actions
    }

    /// Fewer connections are wanted: the requests furthest into the file stop now and their
    /// ranges go back to pending, for the connections that stay to take in file order.
    mutating func shed() -> [Action] {
        var actions: [Action] = []
        let running = requests.keys.filter { plan.segments[$0].state == .active && !plan.segments[$0].isTwin && plan.segments[$0].twin == nil }
            .sorted { plan.segments[$0].start < plan.segments[$1].start }
        for segment in running.dropFirst(governor.target) where requests.count > governor.target {
            plan.park(segment)
            endRequest(segment)
            actions.append(.cancel(segment: segment))
        }
        return actions
    }

    /// A response's first byte came `wait` after its request was sent: the round trip, the
    /// server's own time, and any time the server held the response back. The shortest wait
    /// seen is what every request costs; a longer one is mostly a server pacing the
    /// connection (a rate limit delays the next response on it), which a larger chunk would
    /// not save. It sets how long chunks last.
    mutating func measured(wait: Duration) {
        responseWait = min(responseWait ?? wait, wait)
    }

    /// How long one chunk should last: long enough that waiting for each request's first byte
    /// costs `chunkWaitShare` of it, within `shortestChunkDuration...chunkDuration`.
    var chunkDuration: Duration {
        guard let wait = responseWait else { return options.chunkDuration }
        return min(options.chunkDuration, max(options.shortestChunkDuration, wait / options.chunkWaitShare))
    }

    /// Once nothing is left to hand out, a free connection still takes half of a range this
    /// long or longer, below the usual twice the minimum split: where each connection is
    /// limited, two connections on halves end sooner than a twin racing the same bytes at the
    /// same speed (a last chunk of 2 MiB at 8 MiB/s held a download 0.1 s past every other
    /// connection). A half must last at least four of a request's waits at one connection's
    /// measured speed, so that on a far server the new request is not still waiting when the
    /// range would have ended anyway; and at least `endgameMinimumTail`, like a twin.
    var endgameSplit: Int64 {
        Self.endgameSplit(perConnection: perConnectionSpeed, wait: responseWait, tail: options.endgameMinimumTail)
    }

    /// `endgameSplit` from one connection's speed (bytes per second), the shortest wait for a
    /// response's first byte and the endgame tail; unmeasured speeds or waits count as nothing.
    static func endgameSplit(perConnection: Double?, wait: Duration?, tail: Int64) -> Int64 {
        let waits = Int64((perConnection ?? 0) * (wait?.secondsValue ?? 0) * 4)
        return 2 * max(tail, waits)
    }

    /// One connection's share of the last measured throughput (nil before any measurement).
    var perConnectionSpeed: Double? {
        governor.lastSample.map { $0.bytesPerSecond / Double(max(1, $0.count)) }
    }

    /// The size of the next chunk: about `chunkDuration` at one connection's measured speed
    /// (before any measurement, a quarter of an even share), leaving work for every connection
    /// the target allows, within `minimumSplit...maximumChunk`.
    func nextChunk() -> Int64 {
        var size = perConnectionSpeed.map { Int64($0 * chunkDuration.secondsValue) }
            ?? (plan.length ?? 0) / Int64(max(1, options.connections) * 4)
        size = min(size, plan.pendingBytes / Int64(max(1, governor.target)))
        return min(max(size, options.minimumSplit), options.maximumChunk)
    }
}
