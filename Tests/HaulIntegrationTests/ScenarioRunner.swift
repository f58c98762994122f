import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer

/// Runs one scenario: starts its server, downloads through the public API, and gathers what
/// came out for `ScenarioCheck`.
struct ScenarioRunner {
    /// What one run produced.
    struct Outcome {
        /// `nil` on success, else the error the download failed with.
        var error: (any Error)?
        /// The download did not end within the hard limit and was cancelled.
        var timedOut: Bool
        var elapsed: Duration
        /// SHA-256 of the destination file, when it exists.
        var digest: String?
        var requests: [ScenarioRequest]
        /// Names in the scratch directory after the download.
        var leftovers: [String]
    }

    static let destinationName = "out.bin"

    let scenario: ScenarioFile

    /// The digest of each served version, by version number.
    func versionDigests() -> [String] {
        // Versions too large to hash (hostile declared lengths) get no digest: no file can match them.
        scenario.server.versions.map { $0.size > 1 << 32 ? "(too large to hash)" : $0.content.sha256 }
    }

    func run() async throws -> Outcome {
        let server = try await ScenarioServer.start(scenario.server)
        let scratch = Scratch()
        defer { scratch.cleanup() }
        let client = scenario.client
        let session = DownloadSession(configuration: configuration())
        defer { session.invalidateAndCancel() }
        let destination = scratch.file(Self.destinationName)
        let task = session.downloadTask(with: URLRequest(url: server.url(client?.path ?? "/file.bin")), to: destination)
        if let expected = client?.expectedSHA256 { task.expectedSHA256 = resolve(expected) }
        if let mirrors = client?.mirrors { task.mirrors = mirrors.map { server.url($0) } }

        // The hard limit keeps a hung download from holding the suite: a little past the bound.
        let bound = scenario.expect.maxSeconds ?? 60
        let started = ContinuousClock.now
        let result = await Self.race(task: task, limit: .seconds(bound + 5))
        let elapsed = ContinuousClock.now - started
        let digest = FileManager.default.fileExists(atPath: destination.path)
            ? try? SHA256.hex(ofFileAt: destination.path) : nil
        let outcome = Outcome(error: result.error, timedOut: result.timedOut, elapsed: elapsed, digest: digest,
                              requests: server.requests, leftovers: scratch.contents.sorted())
        await server.shutdown()
        return outcome
    }

    private func configuration() -> DownloadSession.Configuration {
        let client = scenario.client
        var configuration = DownloadSession.Configuration()
        configuration.connectionsPerDownload = client?.connections ?? 16
        // A scenario's faults hit the requests of `connections` connections, as it says.
        configuration.adaptsConnectionCount = client?.adaptive ?? false
        configuration.minimumSplitSize = client?.minimumSplit ?? 1 << 20
        configuration.retryLimit = client?.retries ?? 5
        configuration.timeoutIntervalForRequest = client?.stallSeconds ?? 30
        configuration.maximumBytesPerSecond = client?.maximumBytesPerSecond ?? 0
        configuration.syncsBeforeMove = false
        return configuration
    }

    /// `version:N` as the digest of version N; anything else as written.
    private func resolve(_ expected: String) -> String {
        guard expected.hasPrefix("version:"), let number = Int(expected.dropFirst("version:".count)),
              scenario.server.versions.indices.contains(number) else { return expected }
        return scenario.server.versions[number].content.sha256
    }

    /// Runs the task to its end through `events`, or gives up after `limit` and cancels it
    /// (without waiting for a download that ignores cancellation).
    private static func race(task: DownloadTask, limit: Duration) async -> (error: (any Error)?, timedOut: Bool) {
        await withCheckedContinuation { continuation in
            let once = Once(continuation)
            let events = task.events
            task.resume()
            let timer = Task {
                try await Task.sleep(for: limit)
                once.finish(nil, timedOut: true)
                task.cancel()
            }
            Task {
                do {
                    for try await _ in events {}
                    once.finish(nil, timedOut: false)
                } catch {
                    once.finish(error, timedOut: false)
                }
                timer.cancel()
            }
        }
    }
}

/// Resumes a continuation once, from whichever side of a race ends first.
private final class Once: @unchecked Sendable {
    // Unchecked: `lock` guards `continuation`.
    private let lock = NSLock()
    private var continuation: CheckedContinuation<(error: (any Error)?, timedOut: Bool), Never>?

    init(_ continuation: CheckedContinuation<(error: (any Error)?, timedOut: Bool), Never>) {
        self.continuation = continuation
    }

    func finish(_ error: (any Error)?, timedOut: Bool) {
        let waiting = lock.withLock {
            defer { continuation = nil }
            return continuation
        }
        waiting?.resume(returning: (error, timedOut))
    }
}
