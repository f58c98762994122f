import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul

extension HaulCommand {
    /// `haul get URL -o FILE`: one download over several connections, resumable.
    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download a URL over several connections.",
            discussion: """
            An interrupted download (Ctrl-C, a crash, a lost connection) leaves a journal beside the
            output file; running the same command again continues where it stopped.

            \(ExitStatus.helpText)
            """
        )

        @Argument(help: "The http or https URL to download.")
        var url: String

        @Option(name: .shortAndLong, help: "Where to write the file.")
        var output: String

        @Option(name: [.customShort("x"), .long], help: "Connections for this download (1-64).")
        var connections: Int = 16

        @Option(name: [.customShort("k"), .long], help: "Smallest range worth its own connection (e.g. 1M).")
        var minSplit: ByteSize = ByteSize(bytes: 1 << 20)

        @Option(name: .customLong("sha256"), help: "The file's expected SHA-256 (64 hex digits).")
        var sha256: String?

        @Option(help: "The expected checksum as sha-256=HEX (or sha256-BASE64).")
        var checksum: String?

        @Option(help: "A SHA256SUMS file listing the expected digest for the output's name.")
        var checksumFile: String?

        @Flag(name: [.customShort("c"), .customLong("continue")],
              help: "Resume from the journal, and fail rather than start over if it cannot be used.")
        var continueDownload = false

        @Flag(help: "Ignore a journal from an earlier run and start over.")
        var noResume = false

        @Flag(name: .shortAndLong, help: "Print nothing but errors.")
        var quiet = false

        @Flag(help: "Do not flush the file to disk before moving it into place (faster, not power-cut safe).")
        var noSync = false

        @Flag(help: "Keep no journal while downloading (a killed haul cannot resume; Ctrl-C still can).")
        var noJournal = false

        @Flag(help: "Do not compute the file's SHA-256 (saves CPU; not allowed with a checksum option).")
        var noHash = false

        func validate() throws {
            guard (1...64).contains(connections) else {
                throw ValidationError("--connections must be between 1 and 64, got \(connections)")
            }
            guard minSplit.bytes >= 1 else { throw ValidationError("--min-split must be at least 1 byte") }
            guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", parsed.host != nil else {
                throw ValidationError("'\(url)' is not an http or https URL")
            }
            guard !(continueDownload && noResume) else {
                throw ValidationError("--continue and --no-resume contradict each other")
            }
            guard [sha256, checksum, checksumFile].compactMap({ $0 }).count <= 1 else {
                throw ValidationError("give one of --sha256, --checksum and --checksum-file")
            }
            guard !noHash || (sha256 == nil && checksum == nil && checksumFile == nil) else {
                throw ValidationError("--no-hash cannot be combined with a checksum to verify")
            }
            if let sha256, sha256.count != 64 || !sha256.allSatisfy(\.isHexDigit) {
                throw ValidationError("--sha256 must be 64 hex digits, got '\(sha256)'")
            }
            if let checksum, !checksum.lowercased().hasPrefix("sha-256="), !checksum.hasPrefix("sha256-") {
                throw ValidationError("--checksum takes sha-256=HEX (or sha256-BASE64), got '\(checksum)'")
            }
        }

        /// The expected digest from whichever option gave one.
        private func expectedDigest(for destination: URL) throws -> String? {
            if let sha256 { return sha256 }
            if let checksum { return checksum }
            guard let checksumFile else { return nil }
            guard let text = try? String(contentsOfFile: checksumFile, encoding: .utf8) else {
                report("cannot read the checksum file \(checksumFile)")
                throw ExitStatus.usage.code
            }
            let names = [destination.lastPathComponent, URL(string: url)?.lastPathComponent].compactMap { $0 }
            guard let digest = names.lazy.compactMap({ ChecksumFile.digest(for: $0, in: text) }).first else {
                report("\(checksumFile) lists no digest for \(names.joined(separator: " or "))")
                throw ExitStatus.usage.code
            }
            return digest
        }

        func run() async throws {
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = connections
            configuration.minimumSplitSize = minSplit.bytes
            configuration.syncsBeforeMove = !noSync
            configuration.writesJournal = !noJournal
            configuration.computesSHA256 = !noHash
            let session = DownloadSession(configuration: configuration)
            let source = URL(string: url)!
            let destination = URL(fileURLWithPath: output).standardizedFileURL
            let resumeData = try journal(for: destination, url: source)

            let expected = try expectedDigest(for: destination)
            let started = ContinuousClock.now
            let task: DownloadTask
            do {
                task = try await download(session: session, source: source, destination: destination,
                                          resumeData: resumeData, expected: expected)
            } catch {
                if error is ExitCode { throw error }
                report(error.localizedDescription)
                throw ExitStatus(for: error).code
            }
            if !quiet {
                let seconds = (ContinuousClock.now - started).seconds
                let size = task.countOfBytesExpectedToReceive
                let rate = seconds > 0 ? Double(size) / seconds / 1_048_576 : 0
                var line = "\(output): \(size) bytes in \(String(format: "%.2f", seconds)) s "
                    + "(\(String(format: "%.1f", rate)) MiB/s)"
                if let digest = task.sha256 {
                    line += ", sha-256 \(digest)"
                    if let source = task.checksumSource {
                        line += source == .caller ? " (verified)" : " (verified against the server's \(source.rawValue))"
                    }
                }
                print(line)
            }
        }

        /// Runs the download (resuming when there is resume data, starting over when it cannot be
        /// used and `-c` was not given) and returns the finished task.
        private func download(session: DownloadSession, source: URL, destination: URL, resumeData: Data?,
                              expected: String?) async throws -> DownloadTask {
            if let resumeData {
                do {
                    return try await run(session.downloadTask(withResumeData: resumeData, to: destination), expected: expected)
                } catch HaulError.resumeDataInvalid(let reason) where !continueDownload {
                    note("cannot resume (\(reason)); starting over")
                }
            }
            return try await run(session.downloadTask(with: URLRequest(url: source), to: destination), expected: expected)
        }

        /// Runs `task` to its end; Ctrl-C / SIGTERM cancel it, which keeps its journal.
        private func run(_ task: DownloadTask, expected: String?) async throws -> DownloadTask {
            task.expectedSHA256 = expected
            let interruption = Interruption { task.cancel() }
            let events = task.events
            task.resume()
            do {
                for try await _ in events {}
            } catch {
                if interruption.happened {
                    report("interrupted; the journal is saved — run the same command again to resume")
                    throw ExitStatus.interrupted.code
                }
                throw error
            }
            return task
        }

        /// The resume data to continue with, if a usable journal for this URL and output exists.
        private func journal(for destination: URL, url: URL) throws -> Data? {
            let path = DownloadSession.journalURL(for: destination)
            guard let data = FileManager.default.contents(atPath: path.path) else { return nil }
            if noResume {
                try? FileManager.default.removeItem(at: path)
                return nil
            }
            do {
                let resume = try ResumeData(data)
                guard resume.url == url else {
                    return try startOver("the journal at \(path.path) is for \(resume.url.absoluteString)")
                }
                if !quiet {
                    note("resuming: \(resume.bytesDone) of \(resume.length) bytes already downloaded")
                }
                return data
            } catch {
                return try startOver(error.localizedDescription)
            }
        }

        /// With `--continue`, a journal that cannot be used is an error; otherwise say so and
        /// start over.
        private func startOver(_ reason: String) throws -> Data? {
            if continueDownload {
                report("cannot continue: \(reason) (run without -c to start over)")
                throw ExitStatus.networkError.code
            }
            note("cannot resume (\(reason)); starting over")
            return nil
        }

        private func report(_ message: String) {
            FileHandle.standardError.write(Data("haul: \(message)\n".utf8))
        }

        private func note(_ message: String) {
            FileHandle.standardError.write(Data("haul: \(message)\n".utf8))
        }
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
