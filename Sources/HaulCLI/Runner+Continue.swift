import Foundation
import Haul
#if canImport(Glibc)
import Glibc
#endif

extension Runner {
    /// What `-c` does with a file haul has no journal for.
    enum Continuation {
        /// Finished (already whole and checked) or refused.
        case done(ExitStatus)
        /// Another program's partial file, checked and adopted: resume from this data.
        case resume(Data)
    }

    /// `-c` with a file at the output and no journal of haul's. A file that is already whole is
    /// checked against the expected digest, else the server's, and kept without a download;
    /// without either it is refused (after its first and last 64 KiB are compared, for the
    /// message), since its middle could be a preallocating downloader's gap. A shorter one (curl's or wget's
    /// partial file) is continued only if its first and last 64 KiB are the server's bytes:
    /// then it becomes the partial file and the rest is fetched. Anything else fails, as `-c`
    /// never starts over. `nil` when this does not apply.
    func continueWithoutJournal(_ job: Job, digest: String?, interruption: Interruption) async -> Continuation? {
        guard command.continueDownload, DownloadSession.journal(for: job.output) == nil else { return nil }
        var info = stat()
        guard lstat(job.output.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        let size = Int64(info.st_size)
        let name = job.output.path
        guard let probe = await probe(job.primary, unless: interruption) else {
            reporter.failed(job, message: "interrupted", status: .interrupted)
            return .done(.interrupted)
        }
        guard let length = probe.length, let status = probe.status, (200..<300).contains(status) else {
            let reason = probe.status.map {
                (200..<300).contains($0) ? "the server does not say how long the file is" : "the server answered HTTP \($0)"
            } ?? probe.error ?? "no answer"
            reporter.failed(job, message: "cannot check \(name) against the server: \(reason)", status: .networkError)
            return .done(.networkError)
        }
        guard size <= length else {
            // Exact counts where the rounded sizes would read the same.
            let (mine, theirs) = Format.bytes(size) == Format.bytes(length) ? ("\(size) bytes", "\(length) bytes")
                : (Format.bytes(size), Format.bytes(length))
            reporter.failed(job, message: "cannot continue: \(name) is larger (\(mine)) than the server's file "
                            + "(\(theirs)); -c never starts over — run without -c and with --force", status: .diskError)
            return .done(.diskError)
        }
        if size == 0, length > 0 {
            reporter.failed(job, message: "cannot continue: \(name) is empty, so there is nothing to continue; "
                            + "run without -c and with --force to download it", status: .diskError)
            return .done(.diskError)
        }
        if size < length {
            // Written to from now on, so only a file of this user's with no other name.
            guard info.st_nlink == 1, info.st_uid == getuid() else {
                let why = info.st_nlink != 1 ? "it has \(info.st_nlink) hard links, and haul never writes to a file another name shares"
                    : "it belongs to another user"
                reporter.failed(job, message: "cannot continue \(name): \(why); continue a copy of it instead", status: .diskError)
                return .done(.diskError)
            }
            return await adopt(job, size: size, length: length, probe: probe, digest: digest)
        }
        if let expected = digest ?? probe.sha256.map({ "sha-256=" + $0 }) {
            // Every form a digest is given in (hex, sha-256=HEX, sha256-BASE64) is checked; one
            // that cannot be read is an error, never a pass.
            guard let wanted = SHA256Digest(expected: expected)?.hex else {
                reporter.failed(job, message: "cannot check \(name): '\(expected)' is not a SHA-256 digest", status: .usage)
                return .done(.usage)
            }
            guard let actual = try? SHA256.hex(ofFileAt: name) else {
                reporter.failed(job, message: "cannot read \(name)", status: .diskError)
                return .done(.diskError)
            }
            guard actual == wanted else {
                reporter.failed(job, message: "\(name) is complete in size but its SHA-256 is \(actual), not \(wanted); "
                                + "-c never starts over — run without -c and with --force", status: .checksumMismatch)
                return .done(.checksumMismatch)
            }
        } else {
            if let refused = await refusedUnlessEndsMatch(job, size: size, message: {
                "\(name) is complete in size but \($0) differ from the server's; -c never starts over — run without -c and with --force"
            }) {
                return refused
            }
            // A file an earlier run finished carries its own SHA-256: with the server's version
            // unchanged, that is the digest to check it against.
            var earlierRun = ""
            if let earlier = EarlierDownload.at(name, from: [job.url, job.primary] + job.mirrors) {
                switch await checkEarlier(earlier, job, probe: probe, digest: nil, endsCompared: true, stop: { interruption.happened }) {
                case .keep:
                    reporter.note("\(job.output.lastPathComponent) is already complete (an earlier run downloaded it and the "
                                  + "server still has that version: \(Self.sameVersionEvidence(earlier.record)), its ends "
                                  + "compared, its bytes unchanged since); nothing to fetch")
                    job.outcome = .init(succeeded: true, message: "already complete", bytes: size, seconds: 0, bytesThisRun: 0)
                    return .done(.success)
                case .refuse(let reason, _):
                    earlierRun = " (an earlier run downloaded it, but \(reason))"
                case .unusable(let message, let status):
                    reporter.failed(job, message: message, status: status)
                    return .done(status)
                }
            }
            // The ends alone prove nothing of the middle: aria2 and axel leave files of the
            // whole size with gaps when they stop. Only a digest can call it complete, unless
            // the two samples covered every byte.
            guard size > 2 * Self.sampleSize else {
                reporter.note("\(job.output.lastPathComponent) is already complete (all its bytes match the server's); nothing to fetch")
                job.outcome = .init(succeeded: true, message: "already complete", bytes: size, seconds: 0, bytesThisRun: 0)
                return .done(.success)
            }
            reporter.failed(job, message: "cannot tell whether \(name) is complete\(earlierRun): it has the server's size and "
                            + "\(Self.sampleDescription(size: size)) match, but the server gives no digest to check the rest "
                            + "(a downloader that preallocates leaves files of the whole size with gaps); give --sha256 to "
                            + "check it, or run without -c and with --force to download it again", status: .diskError)
            return .done(.diskError)
        }
        reporter.note("\(job.output.lastPathComponent) is already complete (its SHA-256 matches); nothing to fetch")
        job.outcome = .init(succeeded: true, message: "already complete", bytes: size, seconds: 0, bytesThisRun: 0)
        return .done(.success)
    }

    /// How many bytes `-c` compares at each end of a file haul has no journal for.
    static let sampleSize: Int64 = 64 << 10

    /// What `differingSample` compares, for messages.
    static func sampleDescription(size: Int64) -> String {
        size <= sampleSize ? "its \(Format.bytes(size))" : "its first and last \(Format.bytes(sampleSize))"
    }

    /// Compares the first and the last 64 KiB of the file at the output (all of it when it is
    /// no longer) with the server's bytes at the same offsets: a new version of a file most often
    /// differs at its start (a header, a date, a version) even where its end is the old one's.
    /// Returns the part that differs (or could not be read), or `nil`.
    /// `local` reads the file's bytes (by default through its path, never following a link).
    func differingSample(_ job: Job, size: Int64, local read: ((Int64, Int) -> [UInt8]?)? = nil)
        async throws(SampleFailure) -> String? {
        let count = min(Self.sampleSize, size)
        let samples: [(offset: Int64, part: String)] = size <= count ? [(0, "its \(Format.bytes(count))")]
            : [(0, "its first \(Format.bytes(count))"), (size - count, "its last \(Format.bytes(count))")]
        for sample in samples {
            // The server's bytes, asked for up to three times: a failed request says nothing
            // about the file on disk.
            var remote: [UInt8]?
            for attempt in 0..<3 where remote == nil {
                if attempt > 0 { try? await Task.sleep(for: .milliseconds(250 << attempt)) }
                remote = await session.fetchBytes(job.primary, from: sample.offset, count: count)
            }
            guard let remote else { throw .network("the server did not send the \(Format.bytes(count)) at byte \(sample.offset) to compare (3 tries)") }
            let local = read.map { $0(sample.offset, Int(count)) } ?? readBytes(job.output.path, from: sample.offset, count: Int(count))
            guard let local else {
                throw .local("\(job.output.path) could not be read (it changed or went away meanwhile)")
            }
            if remote != local { return sample.part }
        }
        return nil
    }

    /// Compares the ends of the file at the output with the server's: `nil` when they match,
    /// else how `-c` ends (refused with `message(part)` naming the part that differs, or a
    /// comparison that could not be made).
    private func refusedUnlessEndsMatch(_ job: Job, size: Int64, message: (String) -> String) async -> Continuation? {
        do {
            guard let differing = try await differingSample(job, size: size) else { return nil }
            reporter.failed(job, message: message(differing), status: .diskError)
            return .done(.diskError)
        } catch {
            return failed(job, comparing: error)
        }
    }

    /// Why the ends of a file could not be compared at all.
    enum SampleFailure: Error {
        case network(String)
        case local(String)
    }

    /// Reports a comparison that could not be made; the file is left as it is.
    private func failed(_ job: Job, comparing failure: SampleFailure) -> Continuation {
        switch failure {
        case .network(let reason):
            reporter.failed(job, message: "cannot check \(job.output.path) against the server: \(reason); "
                            + "the file is left as it is — try again later", status: .networkError)
            return .done(.networkError)
        case .local(let reason):
            reporter.failed(job, message: "cannot check \(reason); try again", status: .diskError)
            return .done(.diskError)
        }
    }

    /// A partial file of `size` of `length` bytes without a journal: compare its first and last
    /// 64 KiB with the server's, then make it the download's partial file.
    private func adopt(_ job: Job, size: Int64, length: Int64, probe: DownloadProbe, digest: String?) async -> Continuation {
        let name = job.output.path
        guard probe.supportsRanges else {
            reporter.failed(job, message: "cannot continue \(name): the server does not serve byte ranges; -c never starts over",
                            status: .diskError)
            return .done(.diskError)
        }
        if let refused = await refusedUnlessEndsMatch(job, size: size, message: {
            "cannot continue \(name): \($0) are not the server's bytes (another file, or another version); "
                + "-c never starts over — run without -c and with --force"
        }) {
            return refused
        }
        let expected = digest.flatMap { SHA256Digest(expected: $0)?.hex }
        do {
            let data = try DownloadSession.adoptPartialFile(at: job.output, url: job.primary, length: length, prefix: size,
                                                            etag: probe.etag, lastModified: probe.lastModified,
                                                            expectedSHA256: expected)
            reporter.note("\(job.output.lastPathComponent): continuing another program's partial file at "
                          + "\(Format.bytes(size)) of \(Format.bytes(length)) (\(Self.sampleDescription(size: size)) match the "
                          + "server's; the bytes between are taken as they are: give --sha256 to check them)")
            return .resume(data)
        } catch {
            reporter.failed(job, message: "cannot continue \(name): \(error.description)", status: .diskError)
            return .done(.diskError)
        }
    }

    /// `count` bytes of the file at `path` from `offset`, read without following a link.
    private func readBytes(_ path: String, from offset: Int64, count: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return read == count ? bytes : nil
    }
}
