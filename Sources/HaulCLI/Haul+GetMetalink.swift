import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul

/// A `haul get` job made from one file of a metalink.
struct MetalinkJob: Sendable {
    /// A metalink of this one file.
    var metalink: Metalink
    /// The output directory its name is resolved in.
    var directory: URL
    var location: String?
}

extension HaulCommand.Get {
    /// Whether an argument names a local metalink file rather than a URL.
    static func isMetalinkFile(_ text: String) -> Bool {
        let lower = text.lowercased()
        guard !lower.hasPrefix("http://"), !lower.hasPrefix("https://") else { return false }
        return lower.hasSuffix(".meta4") || lower.hasSuffix(".metalink")
    }

    /// The options that make sense with metalinks.
    func validateMetalink(urls: [String]) throws {
        guard urls.isEmpty else {
            throw ValidationError("give either URLs or metalinks, not both ('\(redactingCredentials(urls[0]))')")
        }
        guard output == nil else { throw ValidationError("a metalink names its files; use -d DIR instead of -o") }
        guard mirror.isEmpty, !sameFile else { throw ValidationError("a metalink lists its own mirrors; --mirror is not used with it") }
        guard sha256 == nil, checksum == nil, checksumFile == nil else {
            throw ValidationError("a metalink carries its own hashes; --sha256 and --checksum are not used with it")
        }
        guard !noHash else { throw ValidationError("--no-hash cannot be combined with a metalink, whose hashes are checked") }
        if let metalinkLocation, metalinkLocation.count != 2 || !metalinkLocation.allSatisfy({ $0.isASCII && $0.isLetter }) {
            throw ValidationError("--metalink-location takes a two-letter country code, got '\(metalinkLocation)'")
        }
        guard !(quiet && json) else { throw ValidationError("give -q or --json, not both") }
    }

    /// Downloads every file of every metalink given, each from its mirrors.
    func runMetalinks(reporter: Reporter) async throws {
        let session = DownloadSession(configuration: makeConfiguration(reporter: reporter))
        var inputs = (try allURLs()).filter(Self.isMetalinkFile)
        if let metalink { inputs.append(metalink) }
        let directory = URL(fileURLWithPath: dir ?? ".").standardizedFileURL
        var jobs: [Job] = []
        for input in inputs {
            let parsed: Metalink
            do {
                parsed = try Metalink(data: await Self.read(metalink: input, session: session))
            } catch {
                reporter.note("\(input): \(error)")
                throw ExitStatus.usage.code
            }
            for file in parsed.files {
                guard let one = parsed.selecting(fileNamed: file.name) else { continue }
                let sources = file.orderedSources(preferring: metalinkLocation).map(\.url)
                let job = Job(url: sources[0], output: directory.appendingPathComponent(file.name))
                job.mirrors = Array(sources.dropFirst())
                job.metalink = MetalinkJob(metalink: one, directory: directory, location: metalinkLocation)
                jobs.append(job)
            }
        }
        let shares = RateShares(overall: habits.overallLimitRate?.bytes ?? 0,
                                own: session.configuration.maximumBytesPerSecond)
        let runner = Runner(command: self, session: session, reporter: reporter, sums: nil,
                            reserved: Set(jobs.map(\.output.path)), shares: shares)
        let status = await runner.run(jobs, concurrency: maxConcurrentDownloads)
        reporter.close()
        if status != .success { throw status.code }
    }

    /// The bytes of a metalink: a local file (at most the largest metalink read), or one
    /// downloaded from an http(s) URL into memory by way of a temporary file (stopped once it is
    /// larger than that).
    static func read(metalink input: String, session: DownloadSession) async throws -> Data {
        if let url = URL(string: input), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" {
            // Stopped as soon as it is longer than any metalink read: a server's endless or
            // huge answer never fills the disk.
            let task = session.downloadTask(with: url)
            let events = task.events
            task.resume()
            var finished: URL?
            var tooLarge = false
            do {
                for try await event in events {
                    switch event {
                    case .progress(let written, let expected) where !tooLarge && (written > Metalink.maximumDocumentSize
                        || expected > Metalink.maximumDocumentSize):
                        // Cancelled, and its events read to their end: its temporary file and
                        // journal are gone before haul exits.
                        tooLarge = true
                        task.cancel()
                    case .finished(let location):
                        finished = location
                    default:
                        break
                    }
                }
            } catch where tooLarge {
                // The cancellation, reported below.
            }
            if tooLarge {
                if let finished { try? PlacementRoot(directory: finished.deletingLastPathComponent().path).remove(finished.lastPathComponent) }
                throw ValidationError("the metalink at \(url.withoutCredentials.absoluteString) is larger than "
                                      + "\(Metalink.maximumDocumentSize >> 20) MiB, more than any metalink; it was not read")
            }
            guard let location = finished else { throw ValidationError("cannot read the metalink \(input)") }
            // The temporary file is ours: removed through its directory's placement root.
            defer { try? PlacementRoot(directory: location.deletingLastPathComponent().path).remove(location.lastPathComponent) }
            return try read(path: location.path)
        }
        return try read(path: input)
    }

    private static func read(path: String) throws -> Data {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ValidationError("cannot read the metalink \(path)")
        }
        defer { try? handle.close() }
        let data = try handle.read(upToCount: Metalink.maximumDocumentSize + 1) ?? Data()
        return data
    }
}

extension Runner {
    /// A fresh task for `job`: from its metalink when it has one.
    func newTask(_ job: Job) -> DownloadTask {
        if let made = job.metalink {
            return session.downloadTask(with: made.metalink, inDirectory: made.directory, preferringLocation: made.location)
        }
        return session.downloadTask(with: URLRequest(url: job.primary), to: job.output)
    }

    /// A task continuing `job` from its journal.
    func resumedTask(_ job: Job, _ resumeData: Data) -> DownloadTask {
        if let made = job.metalink {
            return session.downloadTask(with: made.metalink, inDirectory: made.directory, preferringLocation: made.location,
                                        resumeData: resumeData)
        }
        return session.downloadTask(withResumeData: resumeData, to: job.output)
    }
}
