import Dispatch
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import Logging

/// The daemon's queue and the one owner of its downloads: at most `maxConcurrent` run, the rest
/// wait in order; every change is saved (and synced) before it is acknowledged.
///
/// Confined to `queue`: callers hop onto it with `sync` (RPC handling runs there as a whole).
final class DownloadQueue: @unchecked Sendable {
    // Unchecked: every mutable property is used on `queue` only.
    let queue = DispatchQueue(label: "haul.daemon")
    let root: URL
    let rootDirectory: PlacementRoot
    let store: StateStore
    let session: DownloadSession
    let logger: Logger
    var state: DaemonState
    private var running: [String: Running] = [:]
    /// Downloads at once; raising it starts waiting ones at once (set on `queue`).
    var maxConcurrent: Int {
        didSet { schedule() }
    }
    /// aria2's `max-overall-download-limit`: bytes per second for all downloads together (0:
    /// none), shared equally by the running ones and rebalanced as they start and stop.
    var overallLimit: Int64 = 0 {
        didSet { rebalance() }
    }
    /// Called on `queue` when a download starts, pauses, stops, completes or fails (for
    /// notifications), with aria2's event name.
    var onEvent: (String, String) -> Void = { _, _ in }

    private final class Running {
        let task: DownloadTask
        /// The entry's name: what a removed download leaves is discarded by it, even once the
        /// entry is gone from the results (`removeDownloadResult` right after `forceRemove`).
        let name: String
        var sample: (at: ContinuousClock.Instant, bytes: Int64)
        var speed: Int64 = 0
        /// The receive limit given to it now (0: none).
        var limit: Int64 = 0
        /// Why it is being stopped by us (pause or remove), so its cancellation is not an error.
        var stopping: QueueEntry.Status?
        init(task: DownloadTask, name: String) {
            self.task = task
            self.name = name
            sample = (.now, 0)
        }
    }

    init(root: URL, store: StateStore, configuration: DownloadSession.Configuration, maxConcurrent: Int,
         logger: Logger) throws {
        self.root = root
        self.rootDirectory = try PlacementRoot(directory: root.path)
        self.store = store
        var configuration = configuration
        configuration.replacesExistingFiles = false
        self.session = DownloadSession(configuration: configuration)
        self.maxConcurrent = max(1, maxConcurrent)
        self.logger = logger
        var state = try store.load()
        // An entry the daemon would never have made (a damaged or edited state file) is not
        // started: it ends as an error, named in the log, before anything is written for it.
        state.queue.removeAll { entry in
            guard let damage = entry.damage else { return false }
            logger.error("a saved download is damaged and is not started", metadata: ["gid": "\(entry.gid)",
                                                                                     "reason": "\(damage)"])
            var failed = entry
            failed.status = .error
            failed.errorCode = "1"
            failed.errorMessage = "its saved entry is damaged: \(damage)"
            state.stopped.append(failed)
            return true
        }
        // Downloads that were running when the daemon stopped go first, from their journals.
        for index in state.queue.indices where state.queue[index].status == .active {
            state.queue[index].status = .waiting
        }
        self.state = state
    }

    /// Starts what the saved queue says should run.
    func start() {
        queue.async { self.schedule() }
    }

    // MARK: Changes (each saved before it returns)

    /// Queues a download of `uris` (the first, then mirrors). With `metalink` (one file, from
    /// `aria2.addMetalink`) its pieces and hashes verify the file, and `name` is the metalink's
    /// (a relative path whose directories are made inside the root).
    func add(uris: [String], name: String?, connections: Int?, checksum: String?, headers: [String],
             position: Int?, paused: Bool = false, session: String? = nil, taskDescription: String? = nil,
             speed: Int64? = nil, minSplit: Int64? = nil, allowOverwrite: Bool = false,
             metalink: Metalink? = nil, metalinkLocation: String? = nil) throws(RPCError) -> String {
        dispatchPrecondition(condition: .onQueue(queue))
        for uri in uris {
            guard let url = URL(string: uri), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  url.host != nil else {
                throw .invalidParams("addUri needs http or https URIs (mirrors too)")
            }
        }
        guard let first = uris.first.flatMap(URL.init(string:)) else { throw .invalidParams("addUri needs a URI") }
        // Bounded, so the saved queue stays readable: aria2's clients never need more.
        guard uris.count <= 64, uris.allSatisfy({ $0.utf8.count <= 8192 }), headers.count <= 64,
              headers.reduce(0, { $0 + $1.utf8.count }) <= 32768, (taskDescription?.utf8.count ?? 0) <= 4096 else {
            throw .invalidParams("addUri takes at most 64 URIs of 8 KiB and 64 headers of 32 KiB in all")
        }
        guard state.queue.count + state.stopped.count < 100_000 else {
            throw .invalidParams("the queue is full (100000 downloads); remove some first")
        }
        var wanted = name ?? OutputName.from(url: first)
        if let name, metalink == nil {
            guard PlacementRoot.isValidName(name), OutputName.sanitize(name) == name else {
                throw .invalidParams("out must be a plain file name inside the download directory, not '\(name)'")
            }
        }
        if let name { wanted = name }
        // With allow-overwrite, a regular file already at the name may be replaced: only the
        // queue's own names are avoided.
        let name = allowOverwrite && name != nil ? try reserve(wanted, avoidingFiles: false) : try reserve(wanted)
        var entry = QueueEntry(gid: Self.newGID(), uris: uris, name: name, status: paused ? .paused : .waiting,
                               connections: connections, checksum: checksum, headers: headers, session: session,
                               taskDescription: taskDescription)
        entry.maxDownloadLimit = speed
        entry.minSplit = minSplit
        entry.allowOverwrite = allowOverwrite
        if let metalink { try keep(metalink, named: name, for: &entry, location: metalinkLocation) }
        var updated = state
        let index = min(max(position ?? updated.queue.count, 0), updated.queue.count)
        updated.queue.insert(entry, at: index)
        try commit(updated)
        schedule()
        return entry.gid
    }

    func pause(_ gid: String) throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = state.queue.firstIndex(where: { $0.gid == gid }) else { throw .notFound(gid) }
        guard state.queue[index].status != .paused else { return }
        var updated = state
        updated.queue[index].status = .paused
        try commit(updated)
        if let run = running[gid] {
            run.stopping = .paused
            run.task.cancel()
        }
        onEvent("aria2.onDownloadPause", gid)
        schedule()
    }

    func unpause(_ gid: String) throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = state.queue.firstIndex(where: { $0.gid == gid }) else { throw .notFound(gid) }
        guard state.queue[index].status == .paused else { throw .invalidParams("GID \(gid) is not paused") }
        var updated = state
        updated.queue[index].status = .waiting
        try commit(updated)
        schedule()
    }

    func remove(_ gid: String) throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = state.queue.firstIndex(where: { $0.gid == gid }) else { throw .notFound(gid) }
        var updated = state
        var entry = updated.queue.remove(at: index)
        entry.status = .removed
        entry.errorCode = "31"
        entry.errorMessage = "removed"
        updated.stopped.append(entry)
        trimHistory(&updated)
        try commit(updated)
        if entry.hasMetalink { store.removeMetalink(gid: gid) }
        if let run = running[gid] {
            run.stopping = .removed
            run.task.cancel()
        } else {
            // A download that never ran, or was paused: nothing of it is worth keeping.
            discardPartial(of: entry)
        }
        onEvent("aria2.onDownloadStop", gid)
        schedule()
    }

    func changePosition(_ gid: String, pos: Int, how: String) throws(RPCError) -> Int {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = state.queue.firstIndex(where: { $0.gid == gid }) else { throw .notFound(gid) }
        let count = state.queue.count
        let pos = min(max(pos, -count), count)
        var target: Int
        switch how {
        case "POS_SET": target = pos
        case "POS_CUR": target = index + pos
        case "POS_END": target = count - 1 + pos
        default: throw .invalidParams("how must be POS_SET, POS_CUR or POS_END")
        }
        target = min(max(target, 0), count - 1)
        var updated = state
        let entry = updated.queue.remove(at: index)
        updated.queue.insert(entry, at: target)
        try commit(updated)
        return target
    }

    /// Changes the options of a download that is not running (aria2's `changeOption`).
    func change(_ gid: String, connections: Int?, checksum: String?, speed: Int64?) throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = state.queue.firstIndex(where: { $0.gid == gid }) else { throw .notFound(gid) }
        guard state.queue[index].status != .active else {
            throw .invalidParams("GID \(gid) is running; pause it to change its options")
        }
        var updated = state
        if let connections { updated.queue[index].connections = connections }
        if let checksum { updated.queue[index].checksum = checksum }
        if let speed { updated.queue[index].maxDownloadLimit = speed }
        try commit(updated)
    }

    func removeResult(_ gid: String) throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = state.stopped.firstIndex(where: { $0.gid == gid }) else { throw .notFound(gid) }
        var updated = state
        updated.stopped.remove(at: index)
        try commit(updated)
    }

    func purgeResults() throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        var updated = state
        updated.stopped.removeAll()
        try commit(updated)
    }

    /// A background session's downloads: running and waiting ones, and stopped ones whose end
    /// no process of the session has taken yet.
    func sessionEntries(_ session: String) -> [QueueEntry] {
        dispatchPrecondition(condition: .onQueue(queue))
        let running = state.queue.filter { $0.session == session }.map(live)
        return running + state.stopped.filter { $0.session == session && !$0.delivered }
    }

    /// A process of the session took the end of `gid` (its delegate was told): never again.
    func acknowledge(_ gid: String) throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard let index = state.stopped.firstIndex(where: { $0.gid == gid }) else { throw .notFound(gid) }
        var updated = state
        updated.stopped[index].delivered = true
        try commit(updated)
    }

    func save() throws(RPCError) {
        dispatchPrecondition(condition: .onQueue(queue))
        try commit(state)
    }

    // MARK: Reading

    /// The entry for `gid` as it is now (live progress for running ones).
    func entry(_ gid: String) -> QueueEntry? {
        dispatchPrecondition(condition: .onQueue(queue))
        if let entry = state.queue.first(where: { $0.gid == gid }) { return live(entry) }
        return state.stopped.first { $0.gid == gid }
    }

    var active: [QueueEntry] { state.queue.filter { $0.status == .active }.map(live) }
    var waiting: [QueueEntry] { state.queue.filter { $0.status == .waiting || $0.status == .paused } }
    var stopped: [QueueEntry] { state.stopped }

    func speed(of gid: String) -> Int64 { running[gid]?.speed ?? 0 }
    func isRunning(_ gid: String) -> Bool { running[gid] != nil }
    func connections(of gid: String) -> Int { running[gid]?.task.activeConnections ?? 0 }
    var totalSpeed: Int64 { running.values.reduce(0) { $0 + $1.speed } }

    /// Where a download's file is (or will be).
    func path(of entry: QueueEntry) -> String { rootDirectory.location(of: entry.name) }

    // MARK: Running

    /// Gives each running download its share of the overall limit (within its own limit).
    private func rebalance() {
        dispatchPrecondition(condition: .onQueue(queue))
        let share = overallLimit > 0 && !running.isEmpty ? max(1, overallLimit / Int64(running.count)) : 0
        for (gid, run) in running {
            let own: Int64 = state.queue.first(where: { $0.gid == gid })?.maxDownloadLimit ?? 0
            let limit: Int64 = [own, share].filter { $0 > 0 }.min() ?? 0
            if run.limit != limit {
                run.limit = limit
                run.task.maximumBytesPerSecond = limit
            }
        }
    }

    func schedule() {
        dispatchPrecondition(condition: .onQueue(queue))
        defer { rebalance() }
        var changed = false
        var updated = state
        for index in updated.queue.indices
        where updated.queue[index].status == .waiting && running.count < maxConcurrent {
            updated.queue[index].status = .active
            changed = true
            launch(updated.queue[index])
        }
        if changed {
            commitOrKeep(updated)
        }
    }

    private func launch(_ entry: QueueEntry) {
        guard !entry.hasMetalink else {
            guard let task = metalinkTask(for: entry) else {
                queue.async { self.failedToStart(entry.gid, reason: "its metalink is missing from the state directory") }
                return
            }
            run(task, for: entry)
            return
        }
        let destination = root.appendingPathComponent(entry.name)
        var request = URLRequest(url: URL(string: entry.uris[0])!)
        for header in entry.headers {
            let parts = header.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            request.setValue(parts[1].trimmingCharacters(in: .whitespaces), forHTTPHeaderField: String(parts[0]))
        }
        let task: DownloadTask
        if let journal = DownloadSession.journal(for: destination), Self.journal(journal, isFor: entry) {
            task = session.downloadTask(withResumeData: journal, to: destination)
        } else {
            // What is there was left by another download (another URL) that ended under this
            // name: resuming it would give this entry that URL's bytes.
            discardPartial(of: entry)
            task = session.downloadTask(with: request, to: destination)
        }
        task.mirrors = entry.uris.dropFirst().compactMap(URL.init(string:))
        task.expectedSHA256 = entry.checksum
        run(task, for: entry)
    }

    /// Starts `task` for `entry` with the entry's options and follows it to its end.
    private func run(_ task: DownloadTask, for entry: QueueEntry) {
        task.connectionsOverride = entry.connections
        if let limit = entry.maxDownloadLimit, limit > 0 { task.maximumBytesPerSecond = limit }
        if overallLimit > 0 {
            // Its share before it starts, so it is rate-limited from its first byte.
            let share = max(1, overallLimit / Int64(running.count + 1))
            task.maximumBytesPerSecond = min(share, entry.maxDownloadLimit.flatMap { $0 > 0 ? $0 : nil } ?? .max)
        }
        task.minimumSplitOverride = entry.minSplit
        task.replacesExistingFileOverride = entry.allowOverwrite
        let run = Running(task: task, name: entry.name)
        run.limit = task.maximumBytesPerSecond ?? 0
        running[entry.gid] = run
        let gid = entry.gid
        let events = task.events
        task.resume()
        onEvent("aria2.onDownloadStart", gid)
        Task {
            let failure: (any Error)?
            do {
                for try await _ in events {}
                failure = nil
            } catch {
                failure = error
            }
            self.queue.async { self.ended(gid, failure: failure) }
        }
    }

    private func ended(_ gid: String, failure: (any Error)?) {
        guard let run = running.removeValue(forKey: gid) else { return }
        defer { schedule() }
        if run.stopping == .removed { DownloadSession.removePartialDownload(named: run.name, in: rootDirectory) }
        if run.stopping == .paused, let index = state.queue.firstIndex(where: { $0.gid == gid }) {
            // A paused download shows how far it got, as aria2's do, across restarts too.
            var updated = state
            updated.queue[index].totalLength = max(0, run.task.countOfBytesExpectedToReceive)
            updated.queue[index].completedLength = run.task.countOfBytesReceived
            commitOrKeep(updated)
        }
        guard run.stopping == nil else { return }
        guard let index = state.queue.firstIndex(where: { $0.gid == gid }) else { return }
        var updated = state
        var entry = updated.queue.remove(at: index)
        entry.totalLength = run.task.countOfBytesExpectedToReceive
        entry.completedLength = run.task.countOfBytesReceived
        if let failure {
            entry.status = .error
            (entry.errorCode, entry.errorMessage) = ErrorCodes.aria2(for: failure)
        } else {
            entry.status = .complete
            entry.completedLength = entry.totalLength
            entry.sha256 = run.task.sha256
            entry.seamsChecked = run.task.seamChecks.checked
        }
        updated.stopped.append(entry)
        trimHistory(&updated)
        commitOrKeep(updated)
        if entry.hasMetalink { store.removeMetalink(gid: gid) }
        onEvent(failure == nil ? "aria2.onDownloadComplete" : "aria2.onDownloadError", gid)
    }

    /// Samples speeds (called about once a second).
    func tick() {
        dispatchPrecondition(condition: .onQueue(queue))
        let now = ContinuousClock.now
        for run in running.values {
            let bytes = run.task.countOfBytesReceived
            let seconds = (now - run.sample.at).secondsValue
            if seconds > 0 { run.speed = Int64(Double(bytes - run.sample.bytes) / seconds) }
            run.sample = (now, bytes)
        }
    }

    // MARK: Helpers

    private func live(_ entry: QueueEntry) -> QueueEntry {
        guard let run = running[entry.gid] else { return entry }
        var entry = entry
        entry.totalLength = max(0, run.task.countOfBytesExpectedToReceive)
        entry.completedLength = run.task.countOfBytesReceived
        return entry
    }

    func commit(_ updated: DaemonState) throws(RPCError) {
        do {
            try store.save(updated)
        } catch {
            throw .internalError("\(error)")
        }
        state = updated
    }

    /// Saves `updated` where the change must not be lost by the queue in memory even if the
    /// disk refuses it (a download that ended): the failure is logged and memory moves on.
    func commitOrKeep(_ updated: DaemonState) {
        do {
            try commit(updated)
        } catch {
            logger.error("could not save the queue", metadata: ["error": "\(error)"])
            state = updated
        }
    }

    func trimHistory(_ updated: inout DaemonState) {
        let excess = updated.stopped.count - DaemonState.maximumStopped
        if excess > 0 { updated.stopped.removeFirst(excess) }
    }

    /// Whether `journal` is a download of `entry`'s first URI (a journal that cannot be read
    /// is left for the resume to refuse).
    static func journal(_ journal: Data, isFor entry: QueueEntry) -> Bool {
        guard let saved = try? ResumeData(journal) else { return true }
        return saved.url.absoluteString == entry.uris.first.flatMap(URL.init(string:))?.absoluteString
    }

    private func discardPartial(of entry: QueueEntry) {
        DownloadSession.removePartialDownload(named: entry.name, in: rootDirectory)
    }

    private static func newGID() -> String {
        String(format: "%016llx", UInt64.random(in: 1...UInt64.max))
    }
}

extension Duration {
    fileprivate var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
