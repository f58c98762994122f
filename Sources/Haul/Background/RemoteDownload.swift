import Dispatch
import Foundation

/// A background session's task: the `haul daemon` downloads it (so it outlives this process);
/// this queues it there, follows its status and reports it as a local download would.
///
/// Confined to the session queue; calls to the daemon block, so they run on `io`.
final class RemoteDownload: DownloadRunner, @unchecked Sendable {
    // Unchecked: mutable state is used on `queue` only.
    /// Where every call to the daemon runs, one at a time: a task's `addUri` and its
    /// registration with the session happen before, or after, a session's listing, never across.
    static let io = DispatchQueue(label: "haul.background")
    private let connection: DaemonConnection
    private let queue: DispatchQueue
    /// What to queue (`nil` when attaching to a download the daemon already has).
    private let request: (uris: [String], options: [String: String], headers: [String])?
    private(set) var gid: String?
    private var completion: ((Result<DownloadResult, DownloadFailure>) -> Void)?
    var onResponse: (ResponseHead, String?) -> Void = { _, _ in }
    /// The daemon times its own requests; none are collected here.
    var collectedMetrics: CollectedMetrics { CollectedMetrics() }
    /// Called on `io` as soon as the daemon gave the download its GID (before any other call).
    var onGID: @Sendable (String) -> Void = { _ in }
    var onRestart: (String) -> Void = { _ in }
    /// The daemon's last steps are its own: the download ends as a whole.
    var onReceivedAll: () -> Void = {}
    private var timer: DispatchSourceTimer?
    private var latest: (done: Int64, expected: Int64?, connections: Int) = (0, nil, 0)
    private var reportedResponse = false

    /// A new download to queue in the daemon, with its request's header fields (`Name: value`).
    init(connection: DaemonConnection, queue: DispatchQueue, uris: [String], options: [String: String],
         headers: [String] = []) {
        self.connection = connection
        self.queue = queue
        self.request = (uris, options, headers)
    }

    /// A download the daemon already has (a task of an earlier process of the session).
    init(connection: DaemonConnection, queue: DispatchQueue, gid: String) {
        self.connection = connection
        self.queue = queue
        self.request = nil
        self.gid = gid
    }

    var progress: (done: Int64, expected: Int64?, connections: Int) { latest }

    func setCompletion(_ completion: @escaping (Result<DownloadResult, DownloadFailure>) -> Void) {
        self.completion = completion
    }

    func start() {
        let connection = self.connection
        let request = self.request
        Self.io.async { [self] in
            do throws(HaulError) {
                var gid = queue.sync { self.gid }
                if gid == nil, let request {
                    // aria2's `header` option takes a list: every field of the request goes.
                    var options: [String: Any] = request.options
                    if !request.headers.isEmpty { options["header"] = request.headers }
                    gid = try connection.call("aria2.addUri", [request.uris, options]) as? String
                }
                guard let gid else { throw HaulError.unsupportedRequest(reason: "the haul daemon gave no GID") }
                if request != nil { onGID(gid) }
                queue.async { [self] in
                    self.gid = gid
                    startPolling()
                }
            } catch {
                queue.async { [self] in finish(.failure(DownloadFailure(error: error))) }
            }
        }
    }

    func cancel(producingResumeData: Bool) {
        // The daemon removes it (its partial file too); resume data stays with the daemon's own
        // journal, so none is produced here.
        send("aria2.remove")
    }

    /// The daemon applies its own limits; a background task's is set before it starts.
    func setRateLimit(_ bytesPerSecond: Int64) {}

    func suspend() { send("aria2.pause") }

    func resume() { send("aria2.unpause") }

    /// Tells the daemon this process delivered the task's end (so no later process gets it).
    func acknowledge() {
        guard let gid else { return }
        let connection = self.connection
        Self.io.async { _ = try? connection.call("haul.acknowledge", [gid]) }
    }

    // MARK: Following the daemon

    private func send(_ method: String) {
        guard let gid else { return }
        let connection = self.connection
        Self.io.async { _ = try? connection.call(method, [gid]) }
    }

    private func startPolling() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now(), repeating: .milliseconds(250), leeway: .milliseconds(50))
        timer.setEventHandler { [weak self] in self?.poll() }
        self.timer = timer
        timer.activate()
    }

    private var polling = false

    private func poll() {
        guard let gid, !polling, completion != nil else { return }
        polling = true
        let connection = self.connection
        Self.io.async { [self] in
            let status = (try? connection.call("aria2.tellStatus", [gid]) as? [String: Any]).map(Status.init)
            queue.async { [self] in
                polling = false
                if let status { update(status) }
            }
        }
    }

    /// What one `tellStatus` answer says, read off the daemon's queue.
    private struct Status: Sendable {
        var state: String
        var total: Int64
        var done: Int64
        var connections: Int
        var path: String
        var uri: String?
        var sha256: String?
        var seams: Int
        var errorCode: String
        var errorMessage: String

        init(_ object: [String: Any]) {
            let file = (object["files"] as? [[String: Any]])?.first
            state = object["status"] as? String ?? ""
            total = Int64(object["totalLength"] as? String ?? "") ?? 0
            done = Int64(object["completedLength"] as? String ?? "") ?? 0
            connections = Int(object["connections"] as? String ?? "") ?? 0
            path = file?["path"] as? String ?? ""
            uri = (file?["uris"] as? [[String: String]])?.first?["uri"]
            sha256 = object["sha256"] as? String
            seams = Int(object["seamsChecked"] as? String ?? "") ?? 0
            errorCode = object["errorCode"] as? String ?? "1"
            errorMessage = object["errorMessage"] as? String ?? ""
        }
    }

    private func update(_ status: Status) {
        latest = (status.done, status.total > 0 ? status.total : nil, status.connections)
        if !reportedResponse, status.total > 0 {
            reportedResponse = true
            onResponse(ResponseHead(status: 200, contentLength: status.total), status.uri)
        }
        switch status.state {
        case "complete":
            finish(.success(DownloadResult(path: status.path, length: status.total, effectiveURL: nil, sha256: status.sha256,
                                           checksumSource: nil, seamsChecked: status.seams)))
        case "error":
            finish(.failure(DownloadFailure(error: Self.error(code: status.errorCode, message: status.errorMessage,
                                                              path: status.path))))
        case "removed":
            finish(.failure(DownloadFailure(error: .cancelled)))
        default:
            break
        }
    }

    private func finish(_ result: Result<DownloadResult, DownloadFailure>) {
        timer?.cancel()
        timer = nil
        guard let completion else { return }
        self.completion = nil
        completion(result)
    }

    /// The error a local download would have reported, from aria2's code and message.
    static func error(code: String, message: String, path: String) -> HaulError {
        switch code {
        case "3": return .httpStatus(404)
        case "24": return .httpStatus(401)
        case "2": return .transport(code: 28, message: message)
        case "9": return .diskFull(path: path)
        case "13": return .destinationExists(path: path)
        case "32": return .checksumMismatch(expected: "", actual: message)
        case "31": return .cancelled
        default: return .transport(code: 0, message: message.isEmpty ? "the daemon's download failed (aria2 error \(code))" : message)
        }
    }
}
