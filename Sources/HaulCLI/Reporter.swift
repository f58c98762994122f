import Foundation
import Haul
#if canImport(Glibc)
import Glibc
#endif

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
    let started = ContinuousClock.now
    /// Speed estimate (exponential moving average) and the sample it was last updated from.
    fileprivate var speed: Double = 0
    fileprivate var lastSample: (ContinuousClock.Instant, Int64)?
    fileprivate var lastJSON: ContinuousClock.Instant?

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
}

/// Shows downloads: a redrawn block on a terminal, plain lines otherwise, JSON lines with
/// `--json`, nothing but errors with `-q`.
final class Reporter: @unchecked Sendable {
    // Unchecked: `lock` guards `active`, `drawnLines` and the jobs' speed fields.
    enum Mode { case quiet, plain, terminal, json }

    let mode: Mode
    private let lock = NSLock()
    private var active: [Job] = []
    private var drawnLines = 0

    init(quiet: Bool, json: Bool) {
        if json {
            mode = .json
        } else if quiet {
            mode = .quiet
        } else {
            mode = isatty(STDOUT_FILENO) == 1 ? .terminal : .plain
        }
    }

    func started(_ job: Job) {
        lock.withLock { active.append(job) }
        if mode == .json {
            emit(["event": "start", "url": job.shownURL, "output": job.output.path])
        }
    }

    /// Called about ten times a second while downloads run.
    func tick() {
        let now = ContinuousClock.now
        lock.withLock {
            for job in active { sample(job, now: now) }
        }
        switch mode {
        case .terminal:
            lock.withLock { redraw(active.map(line(for:))) }
        case .json:
            let due: [Job] = lock.withLock {
                active.filter { job in
                    guard job.lastJSON.map({ now - $0 >= .seconds(1) }) ?? (now - job.started >= .seconds(1)) else { return false }
                    job.lastJSON = now
                    return true
                }
            }
            for job in due {
                guard let task = job.task else { continue }
                emit(["event": "progress", "url": job.shownURL, "bytes": task.countOfBytesReceived,
                      "total": task.countOfBytesExpectedToReceive, "bytes_per_second": Int(job.speed),
                      "connections": task.activeConnections])
            }
        case .plain, .quiet:
            break
        }
    }

    func finished(_ job: Job, resumedNote: String? = nil) {
        remove(job)
        guard let task = job.task else { return }
        let seconds = (ContinuousClock.now - job.started).seconds
        let bytes = task.countOfBytesExpectedToReceive
        switch mode {
        case .json:
            var object: [String: Any] = ["event": "finish", "url": job.shownURL, "output": job.output.path,
                                         "bytes": bytes, "seconds": (seconds * 1000).rounded() / 1000]
            object["sha256"] = task.sha256
            object["checksum_source"] = task.checksumSource?.rawValue
            object["seams_checked"] = task.seamChecks.checked
            object["seam_mismatches"] = task.seamChecks.mismatched
            if !task.sourcesWithBadPieces.isEmpty { object["sources_with_bad_pieces"] = task.sourcesWithBadPieces }
            emit(object)
        case .terminal, .plain:
            var text = "\(job.output.path): \(Format.bytes(bytes)) in \(String(format: "%.2f", seconds)) s "
                + "(\(Format.bytes(Int64(seconds > 0 ? Double(bytes) / seconds : 0)))/s)"
            if let digest = task.sha256 {
                text += ", sha-256 \(digest)"
                if let source = task.checksumSource {
                    text += source == .caller ? " (verified)"
                        : source == .metalink ? " (verified against the metalink)"
                        : " (verified against the server's \(source.rawValue))"
                }
            } else if task.checksumSource == .metalink {
                text += ", sha-512 verified against the metalink"
            }
            printAbove(text, toStandardError: false)
            for source in task.sourcesWithBadPieces {
                printAbove("haul: \(source) delivered bad pieces; they were fetched again from other sources", toStandardError: true)
            }
        case .quiet:
            break
        }
    }

    /// Stops showing `job` without a result line.
    func dismiss(_ job: Job) {
        remove(job)
        lock.withLock { redraw(active.map(line(for:))) }
    }

    func failed(_ job: Job, message: String, status: ExitStatus) {
        remove(job)
        if mode == .json {
            emit(["event": "error", "url": job.shownURL, "output": job.output.path, "message": message,
                  "exit_code": Int(status.rawValue)])
        } else {
            printAbove("haul: \(job.shownURL): \(message)", toStandardError: true)
        }
    }

    /// A message about the run (not one download), to standard error.
    func note(_ message: String) {
        if mode == .json {
            emit(["event": "note", "message": message])
        } else if mode != .quiet {
            printAbove("haul: \(message)", toStandardError: true)
        }
    }

    /// An error, to standard error, whatever the mode.
    func error(_ message: String) {
        if mode == .json {
            emit(["event": "error", "message": message])
        } else {
            printAbove("haul: \(message)", toStandardError: true)
        }
    }

    /// Clears the progress block (before exiting).
    func close() {
        lock.withLock { redraw([]) }
    }

    // MARK: Private

    private func remove(_ job: Job) {
        lock.withLock { active.removeAll { $0 === job } }
    }

    private func sample(_ job: Job, now: ContinuousClock.Instant) {
        guard let task = job.task else { return }
        let bytes = task.countOfBytesReceived
        if let (time, previous) = job.lastSample {
            let seconds = (now - time).seconds
            if seconds > 0 {
                let instant = Double(max(0, bytes - previous)) / seconds
                job.speed = job.speed == 0 ? instant : 0.7 * job.speed + 0.3 * instant
            }
        }
        job.lastSample = (now, bytes)
    }

    private func line(for job: Job) -> String {
        guard let task = job.task else { return job.output.lastPathComponent }
        let done = task.countOfBytesReceived
        let total = task.countOfBytesExpectedToReceive
        let name = job.output.lastPathComponent
        let shortName = name.count > 28 ? String(name.prefix(27)) + "…" : name
        var text = shortName.padding(toLength: 29, withPad: " ", startingAt: 0)
        if total > 0 {
            let percent = Double(done) / Double(total)
            let width = 20
            let filled = Int(percent * Double(width))
            text += "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
            text += String(format: "%3d%% ", Int(percent * 100))
            text += "\(Format.bytes(done))/\(Format.bytes(total))"
        } else {
            text += Format.bytes(done)
        }
        text += "  \(Format.bytes(Int64(job.speed)))/s"
        if total > 0, job.speed > 1 {
            text += "  ETA \(Format.duration(Double(total - done) / job.speed))"
        }
        text += "  x\(task.activeConnections)"
        return text
    }

    /// Redraws the progress block in place (terminal only). Call with `lock` held.
    private func redraw(_ lines: [String]) {
        guard mode == .terminal else { return }
        var out = drawnLines > 0 ? "\u{1B}[\(drawnLines)F" : ""
        for line in lines { out += "\u{1B}[2K" + line + "\n" }
        out += "\u{1B}[J"
        drawnLines = lines.count
        FileHandle.standardOutput.write(Data(out.utf8))
    }

    /// Prints a line above the progress block.
    private func printAbove(_ text: String, toStandardError: Bool) {
        lock.withLock {
            if mode == .terminal { redraw([]) }
            (toStandardError ? FileHandle.standardError : FileHandle.standardOutput).write(Data((text + "\n").utf8))
        }
    }

    private func emit(_ object: [String: Any]) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        lock.withLock { FileHandle.standardOutput.write(data + Data("\n".utf8)) }
    }
}

/// Human-readable sizes and durations without Foundation's locale-aware formatters.
enum Format {
    static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(max(0, count))
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(Int(value)) B" : String(format: "%.1f ", value) + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let total = Int(seconds.rounded())
        if total >= 3600 { return String(format: "%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60) }
        return String(format: "%d:%02d", total / 60, total % 60)
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
