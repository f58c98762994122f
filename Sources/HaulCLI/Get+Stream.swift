import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
#if canImport(Glibc)
import Glibc
#endif

extension HaulCommand.Get {
    /// `-o -`: the file goes to standard output, in order, while it downloads. Segments are
    /// still fetched ahead into a private temp file; what the journal records as written from
    /// byte 0 on is copied out in 1 MiB steps (memory stays bounded), the rest once the file is
    /// verified. Bytes already sent cannot be taken back, so a file that changes on the server
    /// fails the download (exit 1) instead of restarting it.
    func stream(_ url: URL, configuration base: DownloadSession.Configuration, reporter: Reporter) async throws {
        var configuration = base
        configuration.restartsWhenRemoteFileChanges = false
        configuration.writesJournal = true
        let session = DownloadSession(configuration: configuration)
        let temporary = try PlacementRoot(directory: FileManager.default.temporaryDirectory.path)
        let scratchName = "haul-stream-\(UUID().uuidString)"
        let scratch = try temporary.makeDirectory(scratchName)
        let name = "stream"
        let destination = URL(fileURLWithPath: scratch.location(of: name))
        defer {
            try? DownloadSession.removePartialDownload(for: destination)
            scratch.remove(name)
            temporary.removeDirectory(scratchName)
        }
        let job = Job(url: url, output: destination)
        let task = session.downloadTask(with: URLRequest(url: url), to: destination)
        task.expectedSHA256 = sha256 ?? checksum
        task.mirrors = mirror.map(Self.withScheme).compactMap(URL.init(string:))
        job.task = task
        let interruption = Interruption { task.cancel() }
        let pump = StreamPump(partial: scratch.location(of: ".\(name).haul-part"), destination: destination.path)
        reporter.started(job)
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                reporter.tick()
                if (try? pump.pump()) == false { task.cancel() }
            }
        }
        let events = task.events
        task.resume()
        do {
            for try await _ in events {}
            ticker.cancel()
            try pump.finish(length: task.countOfBytesExpectedToReceive)
        } catch {
            ticker.cancel()
            let status: ExitStatus = interruption.happened ? .interrupted
                : (pump.failure != nil ? .networkError : ExitStatus(for: error))
            let message = pump.failure ?? (interruption.happened ? "interrupted (a stream cannot be resumed)" : error.localizedDescription)
            reporter.failed(job, message: message + " (\(Format.bytes(pump.sent)) were written to standard output)", status: status)
            reporter.close()
            throw status.code
        }
        reporter.close()
        reporter.note("\(Format.bytes(pump.sent)) written to standard output" + (task.sha256.map { ", sha-256 \($0)" } ?? ""))
    }
}

/// Copies a download's settled prefix to standard output as it grows.
final class StreamPump: @unchecked Sendable {
    // Unchecked: `lock` guards every var.
    private let partial: String
    private let destination: String
    private let lock = NSLock()
    private var descriptor: Int32 = -1
    private var _sent: Int64 = 0
    private var _failure: String?

    init(partial: String, destination: String) {
        self.partial = partial
        self.destination = destination
    }

    deinit { if descriptor >= 0 { _ = close(descriptor) } }

    /// Bytes written to standard output so far.
    var sent: Int64 { lock.withLock { _sent } }
    /// Why the stream cannot go on, if it cannot.
    var failure: String? { lock.withLock { _failure } }

    /// Sends what the journal says is written from byte 0 on; `false` when bytes already sent
    /// are no longer recorded as written (the download went back on them).
    @discardableResult
    func pump() throws -> Bool {
        try lock.withLock {
            guard _failure == nil else { return false }
            guard let data = DownloadSession.journal(for: URL(fileURLWithPath: destination)),
                  let resume = try? ResumeData(data) else { return true }
            var prefix: Int64 = 0
            for range in resume.doneRanges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                guard range.lowerBound <= prefix else { break }
                prefix = max(prefix, range.upperBound)
            }
            if prefix < _sent {
                _failure = "the download went back on bytes already written to standard output"
                return false
            }
            if descriptor < 0 { descriptor = open(partial, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
            guard descriptor >= 0 else { return true }
            try copy(upTo: prefix)
            return true
        }
    }

    /// Sends the rest of the finished, verified file.
    func finish(length: Int64) throws {
        try lock.withLock {
            // The partial file became the destination (same inode); open it by its new name if
            // it was never opened.
            if descriptor < 0 { descriptor = open(destination, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
            guard descriptor >= 0 else { throw ExitStatus.diskError }
            try copy(upTo: length)
        }
    }

    /// Call with `lock` held.
    private func copy(upTo end: Int64) throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while _sent < end {
            let want = Int(min(Int64(buffer.count), end - _sent))
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, want, off_t(_sent)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                _failure = "could not read the temp file (\(String(cString: strerror(errno))))"
                throw ExitStatus.diskError
            }
            var written = 0
            while written < count {
                let result = buffer.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress! + written, count - written) }
                if result < 0, errno == EINTR { continue }
                guard result > 0 else {
                    _failure = "standard output was closed"
                    throw ExitStatus.diskError
                }
                written += result
            }
            _sent += Int64(count)
        }
    }
}
