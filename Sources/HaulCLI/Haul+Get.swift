import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul

/// How `haul get` orders a download's sources.
enum MirrorSelection: String, ExpressibleByArgument, CaseIterable {
    case first
    case fastest
}

extension HaulCommand {
    /// `haul get URL…`: downloads over several connections each, resumable, verified.
    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download URLs over several connections each.",
            discussion: """
            Without -o the name comes from the URL path, or from the server's Content-Disposition \
            (reduced to a bare file name). An existing file is not overwritten without --force. \
            An interrupted download (Ctrl-C, a crash, a lost connection) leaves a journal beside \
            the output; running the same command again continues where it stopped.

            EXAMPLES:
              haul get https://example.org/big.iso
              haul example.org/big.iso -x16          (get is the default; http:// too)
              haul get https://example.org/big.iso -o big.iso --sha256 HEX
              haul get -i urls.txt -j 4 -d downloads/ --checksum-file SHA256SUMS
              haul get https://a.example/f.iso --mirror https://b.example/f.iso
              haul get https://example.org/big.iso -v --limit-rate 2M
              haul get https://example.org/big.iso --dry-run

            \(ExitStatus.helpText)
            """
        )

        @Argument(help: "http or https URLs to download.")
        var urls: [String] = []

        @Option(name: .shortAndLong, help: "Where to write the file (one URL only; - streams it to standard output).")
        var output: String?

        @Option(name: [.customShort("d"), .long], help: "Directory for the files (default: the current one); made if missing, as are -o's parents.")
        var dir: String?

        @OptionGroup var transfer: TransferOptions

        @OptionGroup var logging: LoggingOptions

        @OptionGroup var habits: HabitOptions

        @Option(help: "Another URL serving the same file (repeat for several); one download only.")
        var mirror: [String] = []

        @Flag(help: "The URLs are mirrors of one file: download it once, from all of them (their ETags may differ; seams check the bytes).")
        var sameFile = false

        @Option(help: "With mirrors: 'first' keeps the order given; 'fastest' measures each briefly (as haul bench does) and starts from the fastest.")
        var mirrorSelect: MirrorSelection = .first

        @Option(name: .customLong("sha256"), help: "The file's expected SHA-256 (64 hex digits; one URL only).")
        var sha256: String?

        @Option(help: "The expected checksum as sha-256=HEX (or sha256-BASE64; one URL only).")
        var checksum: String?

        @Option(help: "A SHA256SUMS file listing expected digests by file name.")
        var checksumFile: String?

        @Flag(name: [.customShort("c"), .customLong("continue")],
              help: "Resume from the journal (or continue another program's partial file), and fail rather than start over if it cannot be used or the file changed on the server.")
        var continueDownload = false

        @Flag(help: "Ignore a journal from an earlier run and start over.")
        var noResume = false

        @Flag(help: "Overwrite an existing regular file at the name you gave (-o, or the URL's name). Never a directory, link or device.")
        var force = false

        @Flag(help: "Let a name the server chose (Content-Disposition) replace an existing regular file; hidden files are never replaced.")
        var forceServerNames = false

        @Flag(help: "Send -H credentials (Authorization, Cookie) to mirrors too, not only to the URL.")
        var mirrorHeaders = false

        @Option(name: [.customShort("i"), .long], help: "A file of URLs, one per line (# starts a comment).")
        var inputFile: String?

        @Option(name: [.customShort("j", allowingJoined: true), .long],
                help: "Downloads receiving at once (one that has all its bytes makes room while it syncs and renames; with 1 they run one after another).")
        var maxConcurrentDownloads: Int = 4

        @Option(help: "A Metalink 4 file or its http(s) URL: download its files from its mirrors, checking every piece. (A FILE.meta4 argument does the same.)")
        var metalink: String?

        @Option(help: "With a metalink: try the mirrors in this country first (ISO 3166 code, e.g. de).")
        var metalinkLocation: String?

        @Flag(help: "Ignore the mirrors and the metalink the server names in Link headers (rel=duplicate, rel=describedby; Metalink/HTTP).")
        var noLinkMirrors = false

        @Flag(name: .shortAndLong, help: "Print nothing but errors.")
        var quiet = false

        @Flag(help: "Print one JSON object per line: start, progress (at most once a second), finish, error.")
        var json = false

        @Flag(help: "Do not flush files to disk before moving them into place (faster, not power-cut safe).")
        var noSync = false

        @Flag(help: "Keep no journal while downloading (a killed haul cannot resume; Ctrl-C still can).")
        var noJournal = false

        @Flag(help: "Do not compute the files' SHA-256 (saves CPU; not with a checksum to verify).")
        var noHash = false

        func validate() throws {
            let listed = try allURLs()
            let all = listed.filter { !Self.isMetalinkFile($0) }
            if metalink != nil || all.count != listed.count {
                return try validateMetalink(urls: all)
            }
            guard !all.isEmpty else { throw ValidationError("give at least one URL (or -i FILE)") }
            for text in all {
                guard let parsed = URL(string: text), let scheme = parsed.scheme?.lowercased(),
                      scheme == "http" || scheme == "https", parsed.host != nil else {
                    throw ValidationError("'\(redactingCredentials(text))' is not an http or https URL")
                }
            }
            for text in mirror.map(Self.withScheme) {
                guard let parsed = URL(string: text), let scheme = parsed.scheme?.lowercased(),
                      scheme == "http" || scheme == "https", parsed.host != nil else {
                    throw ValidationError("--mirror '\(redactingCredentials(text))' is not an http or https URL")
                }
            }
            if !mirror.isEmpty, all.count > 1, !sameFile {
                throw ValidationError("--mirror is for one download; use --same-file to treat several URLs as mirrors")
            }
            if let output, output != "-" {
                let leaf = output.split(separator: "/").last.map(String.init) ?? ""
                guard !output.hasSuffix("/"), leaf != ".", leaf != ".." else {
                    throw ValidationError("-o '\(output)' names a directory; -o names the file to write — "
                                          + "to download into a directory, use -d '\(output)'")
                }
                guard !DownloadSession.isSideName(leaf) else {
                    throw ValidationError("-o '\(output)': names like .NAME.haul-part and .NAME.haul-journal are haul's "
                                          + "own side files (another download's partial file could be overwritten); choose another name")
                }
            }
            if output != nil {
                guard all.count == 1 || sameFile else { throw ValidationError("-o names one file; use -d DIR for several URLs") }
                guard dir == nil else { throw ValidationError("give -o or -d, not both") }
            }
            guard maxConcurrentDownloads >= 1 else { throw ValidationError("--max-concurrent-downloads must be at least 1") }
            guard !(continueDownload && noResume) else {
                throw ValidationError("--continue and --no-resume contradict each other")
            }
            guard [sha256, checksum, checksumFile].compactMap({ $0 }).count <= 1 else {
                throw ValidationError("give one of --sha256, --checksum and --checksum-file")
            }
            if sha256 != nil || checksum != nil, all.count > 1, !sameFile {
                throw ValidationError("--sha256 and --checksum check one file; use --checksum-file for several")
            }
            if let sha256, sha256.count != 64 || !sha256.allSatisfy(\.isHexDigit) {
                throw ValidationError("--sha256 must be 64 hex digits, got '\(sha256)'")
            }
            if let checksum, !checksum.lowercased().hasPrefix("sha-256="), !checksum.hasPrefix("sha256-") {
                throw ValidationError("--checksum takes sha-256=HEX (or sha256-BASE64), got '\(checksum)'")
            }
            guard !noHash || (sha256 == nil && checksum == nil && checksumFile == nil) else {
                throw ValidationError("--no-hash cannot be combined with a checksum to verify")
            }
            guard !(quiet && json) else { throw ValidationError("give -q or --json, not both") }
            guard !(habits.remoteName && output != nil) else { throw ValidationError("give -o FILE or -O, not both") }
            if output == "-" {
                guard !json else { throw ValidationError("-o - writes the file to standard output; --json cannot share it") }
                guard !continueDownload else {
                    throw ValidationError("-o - streams one download from its start; -c cannot continue it")
                }
            }
        }

        /// URLs from the arguments and the input file.
        func allURLs() throws -> [String] {
            var all = urls
            if let inputFile {
                let name = inputFile == "-" ? "the URL list on standard input" : "the input file \(inputFile)"
                guard let text = inputFile == "-" ? StandardInput.text
                    : try? String(contentsOfFile: inputFile, encoding: .utf8) else {
                    if let line = Self.firstLineNotUTF8(inputFile == "-" ? StandardInput.data : FileManager.default.contents(atPath: inputFile)) {
                        throw ValidationError("\(name) is not UTF-8 text (line \(line)); haul reads one URL per line, in UTF-8")
                    }
                    throw ValidationError("cannot read \(name)")
                }
                for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
                    // Character's own test: Foundation's character sets are slow on Linux.
                    let start = line.firstIndex { !$0.isWhitespace } ?? line.endIndex
                    let end = line.lastIndex { !$0.isWhitespace }.map(line.index(after:)) ?? start
                    let url = line[start..<end]
                    guard !url.isEmpty, !url.hasPrefix("#") else { continue }
                    guard !url.contains("\t") else {
                        throw ValidationError("line \(number + 1) of \(name) holds a tab: haul reads one URL per line "
                                              + "(to give mirrors of one file, use --mirror or --same-file)")
                    }
                    all.append(String(url))
                }
            }
            return all.map(Self.withScheme)
        }

        /// The number of the first line of `data` that is not UTF-8, if one is not.
        static func firstLineNotUTF8(_ data: Data?) -> Int? {
            guard let data else { return nil }
            for (number, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated()
            where String(data: Data(line), encoding: .utf8) == nil {
                return number + 1
            }
            return nil
        }

        func run() async throws {
            let reporter = Reporter(quiet: quiet, json: json, plainInterval: logging.progressInterval,
                                    fileOnStandardOutput: output == "-")
            // Read once: a list of thousands of URLs is parsed and encoded once.
            let listed = try allURLs()
            if habits.dryRun { return try await dryRun(listed, reporter: reporter) }
            try makeOutputDirectories(reporter)
            if metalink != nil || listed.contains(where: Self.isMetalinkFile) {
                return try await runMetalinks(reporter: reporter)
            }
            let configuration = makeConfiguration(reporter: reporter)
            if output == "-", let first = listed.first, let url = URL(string: first) {
                return try await stream(url, configuration: configuration, reporter: reporter)
            }
            let session = DownloadSession(configuration: configuration)
            let sums = try checksumList(reporter)

            var jobs: [Job] = []
            var sources = listed
            var mirrors = mirror.map(Self.withScheme).compactMap(URL.init(string:))
            if sameFile {
                mirrors = sources.dropFirst().compactMap(URL.init(string:)) + mirrors
                sources = Array(sources.prefix(1))
            }
            var reserved: Set<String> = []
            let directory = URL(fileURLWithPath: dir ?? ".")
            for text in sources {
                let url = URL(string: text)!
                var destination: URL
                if let output {
                    destination = URL(fileURLWithPath: output).standardizedFileURL
                } else {
                    destination = directory.appendingPathComponent(OutputName.from(url: url))
                        .standardizedFileURL
                    // Names are reserved at the start: two downloads never share one.
                    let wanted = destination
                    destination = OutputName.distinct(destination, taken: reserved)
                    if destination != wanted {
                        reporter.note("\(wanted.lastPathComponent) is taken by another download of this run; "
                            + "\(url.withoutCredentials.absoluteString) is saved as \(destination.lastPathComponent)")
                    }
                }
                reserved.insert(destination.path)
                let job = Job(url: url, output: destination)
                job.mirrors = mirrors
                jobs.append(job)
            }
            if mirrorSelect == .fastest, let job = jobs.first, !job.mirrors.isEmpty {
                await startFromFastest(job, session: session, reporter: reporter)
            }
            let shares = RateShares(overall: habits.overallLimitRate?.bytes ?? 0, own: configuration.maximumBytesPerSecond)
            let runner = Runner(command: self, session: session, reporter: reporter, sums: sums, reserved: reserved,
                                shares: shares)
            let status = await runner.run(jobs, concurrency: maxConcurrentDownloads)
            reporter.close()
            if status != .success { throw status.code }
        }

        /// The settings the options describe, logging through `reporter`.
        func makeConfiguration(reporter: Reporter) -> DownloadSession.Configuration {
            var configuration = transfer.configuration()
            configuration.logger = ConsoleLogHandler.bootstrap(reporter: reporter, level: logging.level)
            configuration.syncsBeforeMove = !noSync
            configuration.writesJournal = !noJournal
            configuration.computesSHA256 = !noHash
            configuration.replacesExistingFiles = force || habits.timestamping
            configuration.sendsCredentialsToMirrors = mirrorHeaders
            configuration.usesMirrorsFromLinkHeaders = !noLinkMirrors
            configuration.mirrorsServeSameBytes = sameFile
            // -c continues the bytes on disk or fails; it never starts over with another version.
            if continueDownload { configuration.restartsWhenRemoteFileChanges = false }
            return configuration
        }

        /// Measures the URL and its mirrors for a second each and makes the fastest the primary.
        private func startFromFastest(_ job: Job, session: DownloadSession, reporter: Reporter) async {
            var measured: [(URL, Double)] = []
            for url in [job.url] + job.mirrors {
                let result = await session.measure(url, connections: 2, duration: 1, bytes: 4 << 20)
                measured.append((url, result.error == nil ? result.multiConnectionBytesPerSecond : -1))
            }
            let ranked = measured.sorted { $0.1 > $1.1 }.map(\.0)
            guard let fastest = ranked.first, fastest != job.url else { return }
            reporter.note("fastest source: \(fastest.withoutCredentials.absoluteString)")
            job.primary = fastest
            job.mirrors = Array(ranked.dropFirst())
        }

        /// The checksum file's text, if one was given.
        private func checksumList(_ reporter: Reporter) throws -> String? {
            guard let checksumFile else { return nil }
            guard let text = try? String(contentsOfFile: checksumFile, encoding: .utf8) else {
                reporter.error("cannot read the checksum file \(checksumFile)")
                throw ExitStatus.usage.code
            }
            return text
        }

        /// The expected digest for a job, from whichever option gave one.
        func expectedDigest(for job: Job, sums: String?) -> (digest: String?, missing: Bool) {
            if let sha256 { return (sha256, false) }
            if let checksum { return (checksum, false) }
            guard let sums else { return (nil, false) }
            let names = [job.output.lastPathComponent, job.url.lastPathComponent]
            if let digest = names.lazy.compactMap({ ChecksumFile.digest(for: $0, in: sums) }).first {
                return (digest, false)
            }
            return (nil, true)
        }
    }
}
