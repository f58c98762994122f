import Foundation
import Haul
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Shows downloads: a redrawn block that fits the terminal's width on a terminal, a plain
/// progress line every few seconds otherwise (on standard error, as wget), JSON lines with
/// `--json`, nothing but errors with `-q`.
final class Reporter: @unchecked Sendable {
    // Unchecked: `lock` guards `active`, `drawnLines`, `lastPlainLine` and the jobs' meters.
    enum Mode { case quiet, plain, terminal, json }

    let mode: Mode
    /// Seconds between plain progress lines (not on a terminal).
    let plainInterval: Double
    private let lock = NSLock()
    private var active: [Job] = []
    private var drawnLines = 0
    private var lastPlainLine = ContinuousClock.now
    private let width: TerminalWidth?
    /// Where progress and results go: standard output, or standard error when the downloaded
    /// file itself goes to standard output (`-o -`).
    private let display: FileHandle

    init(quiet: Bool, json: Bool, plainInterval: Double = 5, fileOnStandardOutput: Bool = false) {
        let descriptor = fileOnStandardOutput ? STDERR_FILENO : STDOUT_FILENO
        if json {
            mode = .json
        } else if quiet {
            mode = .quiet
        } else {
            mode = isatty(descriptor) == 1 ? .terminal : .plain
        }
        self.plainInterval = plainInterval
        width = mode == .terminal ? TerminalWidth(descriptor: descriptor) : nil
        display = fileOnStandardOutput ? .standardError : .standardOutput
    }

    func started(_ job: Job) {
        job.started = ContinuousClock.now
        lock.withLock { active.append(job) }
        if mode == .json {
            emit(["event": "start", "url": job.shownURL, "output": job.output.path])
        }
    }

    /// Called about ten times a second while downloads run.
    func tick() {
        let now = ContinuousClock.now
        lock.withLock {
            for job in active {
                if let task = job.task { job.meter.add(task.countOfBytesReceived, at: now) }
            }
        }
        switch mode {
        case .terminal:
            lock.withLock {
                let columns = width?.current ?? 80
                redraw(active.map { line(for: $0, width: columns) })
            }
        case .json:
            let due: [(Job, Double?)] = lock.withLock {
                active.compactMap { job in
                    guard job.lastJSON.map({ now - $0 >= .seconds(1) }) ?? (now - job.started >= .seconds(1)) else { return nil }
                    job.lastJSON = now
                    return (job, job.meter.bytesPerSecond)
                }
            }
            for (job, speed) in due {
                guard let task = job.task else { continue }
                emit(["event": "progress", "url": job.shownURL, "bytes": task.countOfBytesReceived,
                      "total": task.countOfBytesExpectedToReceive, "bytes_per_second": Int(speed ?? 0),
                      "connections": task.activeConnections])
            }
        case .plain:
            let lines: [String] = lock.withLock {
                guard (now - lastPlainLine).seconds >= plainInterval else { return [] }
                lastPlainLine = now
                return active.compactMap(plainLine(for:))
            }
            for text in lines { printAbove(text, toStandardError: true) }
        case .quiet:
            break
        }
    }

    func finished(_ job: Job) {
        remove(job)
        guard let task = job.task else { return }
        let seconds = (ContinuousClock.now - job.started).seconds
        let bytes = task.countOfBytesExpectedToReceive
        let thisRun = max(0, bytes - job.resumedFrom)
        job.outcome = .init(succeeded: true, message: "ok", bytes: bytes, seconds: seconds, bytesThisRun: thisRun)
        switch mode {
        case .json:
            var object: [String: Any] = ["event": "finish", "url": job.shownURL, "output": job.output.path,
                                         "bytes": bytes, "bytes_this_run": thisRun,
                                         "seconds": (seconds * 1000).rounded() / 1000]
            object["sha256"] = task.sha256
            object["checksum_source"] = task.checksumSource?.rawValue
            object["seams_checked"] = task.seamChecks.checked
            object["seam_mismatches"] = task.seamChecks.mismatched
            if !task.sourcesWithBadPieces.isEmpty { object["sources_with_bad_pieces"] = task.sourcesWithBadPieces }
            emit(object)
        case .terminal, .plain:
            var text = "\(job.output.path): \(Format.bytes(bytes)) in \(String(format: "%.2f", seconds)) s "
                + "(\(Format.bytes(Int64(seconds > 0 ? Double(thisRun) / seconds : 0)))/s"
                + (job.resumedFrom > 0 ? "; \(Format.bytes(job.resumedFrom)) were already there)" : ")")
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
        lock.withLock { redraw(active.map { line(for: $0, width: width?.current ?? 80) }) }
    }

    func failed(_ job: Job, message: String, status: ExitStatus) {
        remove(job)
        job.outcome = .init(succeeded: false, message: "\(message) (exit \(status.rawValue))",
                            bytes: nil, seconds: (ContinuousClock.now - job.started).seconds, bytesThisRun: nil)
        if mode == .json {
            emit(["event": "error", "url": job.shownURL, "output": job.output.path, "message": message,
                  "exit_code": Int(status.rawValue)])
        } else {
            printAbove("haul: \(job.shownURL): \(message)", toStandardError: true)
        }
    }

    /// The results table at the end of a batch (more than one download), on standard output.
    func summarize(_ jobs: [Job]) {
        guard jobs.count > 1, mode == .terminal || mode == .plain else { return }
        for row in ResultsTable.render(jobs) { printAbove(row, toStandardError: false) }
    }

    /// A message about the run (not one download), to standard error.
    func note(_ message: String) {
        if mode == .json {
            emit(["event": "note", "message": message])
        } else if mode != .quiet {
            printAbove("haul: \(message)", toStandardError: true)
        }
    }

    /// A log record: `haul: [level: ]message (key: value, …)` on standard error, a JSON object
    /// there with `--json`, nothing with `-q`. Never on standard output.
    func log(level: Logger.Level, message: String, metadata: [String: String]) {
        switch mode {
        case .quiet:
            return
        case .json:
            var object: [String: Any] = ["event": "log", "level": level.rawValue, "message": message,
                                         "time": (Date().timeIntervalSince1970 * 1000).rounded() / 1000]
            if !metadata.isEmpty { object["metadata"] = metadata }
            emit(object, toStandardError: true)
        case .plain, .terminal:
            let marker = level >= .warning ? "\(level == .warning ? "warning" : "error"): "
                : (level <= .debug ? "\(level.rawValue): " : "")
            var text = "haul: " + marker + message
            if !metadata.isEmpty {
                text += " (" + metadata.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"
            }
            printAbove(text, toStandardError: true)
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

    /// The job's row in the block. Call with `lock` held.
    private func line(for job: Job, width: Int) -> String {
        let name = job.output.lastPathComponent
        guard let task = job.task else { return ProgressLine.shorten(name, to: max(width - 1, 1)) }
        return ProgressLine.render(name: name, done: task.countOfBytesReceived, total: task.countOfBytesExpectedToReceive,
                                   bytesPerSecond: job.meter.bytesPerSecond, connections: task.activeConnections,
                                   width: width)
    }

    /// A plain progress line (not a terminal). Call with `lock` held.
    private func plainLine(for job: Job) -> String? {
        guard let task = job.task else { return nil }
        let done = task.countOfBytesReceived
        let total = task.countOfBytesExpectedToReceive
        let speed = job.meter.bytesPerSecond
        var text = "haul: \(job.output.lastPathComponent): "
        if total > 0 {
            text += "\(Int(Double(done) / Double(total) * 100))% of \(Format.bytes(total))"
        } else {
            text += Format.bytes(done)
        }
        text += ", " + (speed.map { Format.bytes(Int64($0)) + "/s" } ?? "--/s")
        if total > 0, let speed, speed > 1 { text += ", ETA \(Format.duration(Double(total - done) / speed))" }
        return text
    }

    /// Redraws the progress block in place (terminal only). Call with `lock` held.
    private func redraw(_ lines: [String]) {
        guard mode == .terminal else { return }
        var out = drawnLines > 0 ? "\u{1B}[\(drawnLines)F" : ""
        for line in lines { out += "\u{1B}[2K" + line + "\n" }
        out += "\u{1B}[J"
        drawnLines = lines.count
        display.write(Data(out.utf8))
    }

    /// Prints a line above the progress block.
    private func printAbove(_ text: String, toStandardError: Bool) {
        lock.withLock {
            if mode == .terminal { redraw([]) }
            (toStandardError ? FileHandle.standardError : display).write(Data((text + "\n").utf8))
        }
    }

    private func emit(_ object: [String: Any], toStandardError: Bool = false) {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        lock.withLock {
            (toStandardError ? FileHandle.standardError : display).write(data + Data("\n".utf8))
        }
    }
}
