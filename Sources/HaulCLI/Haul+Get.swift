import ArgumentParser
import Foundation
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
        }

        func run() async throws {
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = connections
            configuration.minimumSplitSize = minSplit.bytes
            configuration.syncsBeforeMove = !noSync
            configuration.writesJournal = !noJournal
            let session = DownloadSession(configuration: configuration)
            let source = URL(string: url)!
            let destination = URL(fileURLWithPath: output).standardizedFileURL
            let resumeData = try journal(for: destination, url: source)

            let started = ContinuousClock.now
            let mayStartOver = !continueDownload
            let work = Task {
                if let resumeData {
                    do {
                        return try await session.download(resumeFrom: resumeData, to: destination)
                    } catch HaulError.resumeDataInvalid(let reason) where mayStartOver {
                        FileHandle.standardError.write(Data("haul: cannot resume (\(reason)); starting over\n".utf8))
                    }
                }
                return try await session.download(from: source, to: destination)
            }
            let interruption = Interruption { work.cancel() }
            do {
                _ = try await work.value
            } catch {
                if interruption.happened {
                    report("interrupted; the journal is saved — run the same command again to resume")
                    throw ExitStatus.interrupted.code
                }
                report(error.localizedDescription)
                throw ExitStatus(for: error).code
            }
            if !quiet {
                let seconds = (ContinuousClock.now - started).seconds
                let size = (try? FileManager.default.attributesOfItem(atPath: destination.path)[.size] as? Int64) ?? 0
                let rate = seconds > 0 ? Double(size) / seconds / 1_048_576 : 0
                print("\(output): \(size) bytes in \(String(format: "%.2f", seconds)) s "
                      + "(\(String(format: "%.1f", rate)) MiB/s)")
            }
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
