extension DownloadStateMachine {
    struct Options: Equatable, Sendable {
        var connections: Int
        var minimumSplit: Int64
        /// Retries per segment before the download fails.
        var maxRetries: Int
        /// Smallest tail worth an endgame twin.
        var endgameMinimumTail: Int64
        /// When the file changes on the server: start over (true) or fail with
        /// `HaulError.remoteFileChanged` (false).
        var restartsOnRemoteChange: Bool
        /// Restarts allowed before a server whose file keeps changing fails the download.
        var maxRestarts: Int
        /// Sources of the same file: the URL (0) and its mirrors.
        var mirrors: Int = 1
        /// Replace a connection running far below its peers (after `slowGrace`) with a new one
        /// on the same remaining range.
        var replacesSlowConnections = true
        /// A connection slower than this fraction of the median of its peers is slow.
        var slowRatio = 0.3
        /// How long a connection runs before its speed is judged.
        var slowGrace: Duration = .seconds(1)
        /// When every byte has its request and a connection is free, a response that has not
        /// moved for this long gets an endgame twin (otherwise two grace periods).
        var endgamePause: Duration = .milliseconds(300)
        /// How far each range request reaches across its neighbours' boundaries, so every seam
        /// between two responses is compared from both sides (0: no seam checks).
        var seamOverlap: Int64 = 0
        /// Transfers are paused for a rate limit: a segment that does not move is waiting its
        /// turn, not stalled or slow, so it gets no twin and no replacement.
        var rateLimited = false
        /// Invalid `206` answers (wrong range, wrong length) the download tolerates before it
        /// stops trusting ranges and fetches the file as one stream.
        var maxRangeFaults = 3
        /// Fetch the file as one stream without `Range` from the start (a request that is not a
        /// GET: it cannot be split or repeated).
        var singleStream = false
        /// The file is identified by a metalink's hashes, not by validators: mirrors are held to
        /// the length only (their ETags and Last-Modified differ from server to server).
        var identifiedByHashes = false
        /// The caller vouches that every source serves the same bytes (`haul get --same-file`):
        /// a mirror's own ETag and Last-Modified are not held to the first source's and no
        /// If-Range goes to it; its bytes are still checked at every seam.
        var mirrorsMayDifferInValidators = false
        /// Work is taken in chunks in file order as connections free up (so the done prefix and
        /// the streaming hash behind it grow during the download), instead of one range per
        /// connection from the start.
        var chunked = false
        /// The connection count is found by measuring (`ConnectionGovernor`), with
        /// `connections` as its ceiling. Implies `chunked`.
        var adaptsConnections = false
        /// The largest chunk one request takes.
        var maximumChunk: Int64 = 16 << 20
        /// A chunk lasts about this long at the measured speed of one connection, at most (and
        /// while no request's wait for its first byte has been measured).
        var chunkDuration: Duration = .seconds(1)
        /// A chunk lasts at least this long; between the two, long enough that the wait for a
        /// request's first byte costs `chunkWaitShare` of its time. Short chunks keep the work in
        /// file order and the tail small, and servers that let each request start with a burst
        /// (nginx's `limit_rate`) serve more of each from it; every chunk costs a round trip.
        var shortestChunkDuration: Duration = .milliseconds(100)
        var chunkWaitShare = 0.05

        init(connections: Int = 16, minimumSplit: Int64 = 1 << 20, maxRetries: Int = 5,
             endgameMinimumTail: Int64? = nil, restartsOnRemoteChange: Bool = true, maxRestarts: Int = 2,
             mirrors: Int = 1, slowGrace: Duration = .seconds(1), seamOverlap: Int64 = 0) {
            self.mirrors = max(1, mirrors)
            self.seamOverlap = max(0, seamOverlap)
            self.slowGrace = slowGrace
            self.connections = max(1, connections)
            self.minimumSplit = max(1, minimumSplit)
            self.maxRetries = max(0, maxRetries)
            self.endgameMinimumTail = endgameMinimumTail ?? max(1, minimumSplit / 8)
            self.restartsOnRemoteChange = restartsOnRemoteChange
            self.maxRestarts = max(0, maxRestarts)
        }
    }
}
