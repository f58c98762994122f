import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization

extension DownloadSession {
    /// The session's tasks that have not ended: for a background session, every task the daemon
    /// still has for its identifier, including those an earlier process made (and ended ones
    /// whose events were not delivered yet), as `URLSession.getAllTasks`.
    public func getAllTasks(completionHandler: @escaping @Sendable ([DownloadTask]) -> Void) {
        guard configuration.identifier != nil else {
            let tasks = runningTasks
            delivery.enqueue { completionHandler(tasks) }
            return
        }
        attachBackgroundTasks(announcing: false) { [self] tasks in
            delivery.enqueue { completionHandler(tasks) }
        }
    }

    /// The session's tasks that have not ended, as `URLSession.getTasksWithCompletionHandler`:
    /// data and upload tasks (always empty: a `DownloadSession` makes only download tasks), and
    /// download tasks.
    public func getTasksWithCompletionHandler(
        _ completionHandler: @escaping @Sendable ([DownloadTask], [DownloadTask], [DownloadTask]) -> Void
    ) {
        getAllTasks { completionHandler([], [], $0) }
    }

    /// The session's tasks that have not ended, as `URLSession.tasks`: data and upload tasks
    /// (always empty), and download tasks.
    public var tasks: ([DownloadTask], [DownloadTask], [DownloadTask]) {
        get async { ([], [], await allTasks) }
    }

    /// The session's tasks that have not ended (see `getAllTasks(completionHandler:)`).
    public var allTasks: [DownloadTask] {
        get async {
            await withCheckedContinuation { continuation in
                getAllTasks { continuation.resume(returning: $0) }
            }
        }
    }

    /// Asks the daemon for this background session's tasks, makes a task for each one not
    /// known yet and starts following it; with `announcing`, once every task that had already
    /// ended has been delivered, the delegate hears `downloadSessionDidFinishEvents`.
    func attachBackgroundTasks(announcing: Bool, then done: (@Sendable ([DownloadTask]) -> Void)? = nil) {
        guard let identifier = configuration.identifier else { return }
        let stateDirectory = configuration.daemonStateDirectory
        // On the same queue as every task's addUri: a task made here meanwhile is either listed
        // and already registered, or not listed at all.
        RemoteDownload.io.async { [self] in
            var entries: [[String: Any]] = []
            if let endpoint = DaemonEndpoint.find(stateDirectory: stateDirectory) {
                entries = ((try? DaemonConnection(endpoint: endpoint).call("haul.sessionTasks", [identifier])) as? [[String: Any]]) ?? []
            } else {
                logger.warning("no haul daemon is running for this background session; start one with: haul daemon --dir DIR",
                               metadata: ["identifier": "\(identifier)"])
            }
            var tasks: [DownloadTask] = []
            var endedTasks: [DownloadTask] = []
            for entry in entries {
                guard let gid = entry["gid"] as? String else { continue }
                if let known = backgroundTask(gid) {
                    tasks.append(known)
                    continue
                }
                let url = (entry["url"] as? String).flatMap(URL.init(string:))
                let task = makeBackgroundTask(gid: gid, url: url, description: entry["taskDescription"] as? String)
                if ["complete", "error", "removed"].contains(entry["status"] as? String ?? "") { endedTasks.append(task) }
                tasks.append(task)
            }
            // Announced once every task that had ended while no process was attached delivered.
            let pending = Atomic<Int>(endedTasks.count)
            if announcing {
                for task in endedTasks {
                    task.onDelivered = { [self] in
                        if pending.subtract(1, ordering: .relaxed).newValue == 0 { announceFinishedEvents() }
                    }
                }
                if endedTasks.isEmpty { announceFinishedEvents() }
            }
            for task in tasks where task.state == .suspended { task.resume() }
            done?(tasks)
        }
    }

    private func announceFinishedEvents() {
        guard let delegate else { return }
        delivery.enqueue { [self] in delegate.downloadSessionDidFinishEvents(forBackgroundSession: self) }
    }
}
