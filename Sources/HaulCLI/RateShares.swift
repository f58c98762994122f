import Foundation
import Haul

/// `--overall-limit-rate`: one limit for all the downloads of a run, split evenly among those
/// running and rebalanced whenever one starts or ends (a task's limit applies at once).
final class RateShares: @unchecked Sendable {
    // Unchecked: `lock` guards `running`.
    private let overall: Int64
    /// Each download's own limit (`--limit-rate`; 0: none).
    private let own: Int64
    private let lock = NSLock()
    private var running: [ObjectIdentifier: DownloadTask] = [:]

    init(overall: Int64, own: Int64) {
        self.overall = overall
        self.own = own
    }

    func add(_ task: DownloadTask) {
        guard overall > 0 else { return }
        lock.withLock {
            running[ObjectIdentifier(task)] = task
            rebalance()
        }
    }

    func remove(_ task: DownloadTask) {
        guard overall > 0 else { return }
        lock.withLock {
            running[ObjectIdentifier(task)] = nil
            rebalance()
        }
    }

    /// Call with `lock` held.
    private func rebalance() {
        guard !running.isEmpty else { return }
        var share = max(1, overall / Int64(running.count))
        if own > 0 { share = min(share, own) }
        for task in running.values { task.maximumBytesPerSecond = share }
    }
}
