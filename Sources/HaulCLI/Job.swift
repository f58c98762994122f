import Foundation
import Haul

/// One download of a `haul get` run, as the reporter sees it.
final class Job: @unchecked Sendable {
    // Unchecked: `lock` guards the vars.
    let url: URL
    /// The URL requests start from (the first given, or the fastest with --mirror-select).
    var primary: URL {
        get { lock.withLock { _primary ?? url } }
        set { lock.withLock { _primary = newValue } }
    }
    private var _primary: URL?
    /// Other URLs of the same file.
    var mirrors: [URL] {
        get { lock.withLock { _mirrors } }
        set { lock.withLock { _mirrors = newValue } }
    }
    private var _mirrors: [URL] = []
    /// The metalink (of this one file) and output directory, for a job made from one.
    var metalink: MetalinkJob? {
        get { lock.withLock { _metalink } }
        set { lock.withLock { _metalink = newValue } }
    }
    private var _metalink: MetalinkJob?
    private let lock = NSLock()
    private var _output: URL
    private var _task: DownloadTask?
    private var _resumedFrom: Int64 = 0
    private var _outcome: Outcome?
    /// When the job was made; `started(_:)` on the reporter marks the real start.
    var started = ContinuousClock.now
    /// The reporter's state for this job (guarded by the reporter's lock).
    var meter = SpeedMeter()
    var lastJSON: ContinuousClock.Instant?

    /// How a job ended, for the results table.
    struct Outcome {
        var succeeded: Bool
        var message: String
        var bytes: Int64?
        var seconds: Double
        var bytesThisRun: Int64?
    }

    /// The URL as it may be shown or logged: without a user name or password.
    var shownURL: String { url.withoutCredentials.absoluteString }

    init(url: URL, output: URL) {
        self.url = url
        self._output = output
    }

    var output: URL {
        get { lock.withLock { _output } }
        set { lock.withLock { _output = newValue } }
    }

    var task: DownloadTask? {
        get { lock.withLock { _task } }
        set { lock.withLock { _task = newValue } }
    }

    /// Bytes an earlier run had already fetched (this run's speed leaves them out).
    var resumedFrom: Int64 {
        get { lock.withLock { _resumedFrom } }
        set { lock.withLock { _resumedFrom = newValue } }
    }

    var outcome: Outcome? {
        get { lock.withLock { _outcome } }
        set { lock.withLock { _outcome = newValue } }
    }
}
