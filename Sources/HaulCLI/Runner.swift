import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// An earlier run of this download had put the file in place before it was stopped.
private enum Finished: Error {
    case already
}

/// Runs the jobs of a `haul get`: at most N at once, each resumed from its journal when it can
/// be, reported as they go; Ctrl-C and SIGTERM cancel them all (their journals stay).
struct Runner: Sendable {
    let command: HaulCommand.Get
    let session: DownloadSession
    let reporter: Reporter
    let sums: String?
    /// Every output path of this run, reserved at the start: a server's name never takes one.
    let reserved: Set<String>
    /// `--overall-limit-rate`, shared by the running downloads.
    let shares: RateShares

    /// Runs every job; the exit status is the first failure's, or `.interrupted`.
    func run(_ jobs: [Job], concurrency: Int) async -> ExitStatus {
        let interruption = Interruption { for job in jobs { job.task?.cancel() } }
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                reporter.tick()
            }
        }
        defer { ticker.cancel() }
        // By the jobs' order in the list, so the exit status is the first failure's there
        // whichever ended first.
        var ended: [Int: ExitStatus] = [:]
        // N downloads receive at once. One whose bytes have all arrived gives its place to the
        // next while it syncs and renames (that waits for the disk, not the network); up to N
        // more wait so, as the descriptor limit allows. With -j 1 they run one after another.
        let receiving = Slots(concurrency)
        let extra = Self.placesWhileFinishing(concurrency: concurrency)
        let started = Slots(concurrency > Int.max - extra ? Int.max : concurrency + extra)
        await withTaskGroup(of: (Int, ExitStatus).self) { group in
            for (index, job) in jobs.enumerated() {
                await started.acquire()
                await receiving.acquire()
                guard !interruption.happened else {
                    receiving.release()
                    started.release()
                    break
                }
                let place = receiving.holding()
                group.addTask {
                    defer {
                        place.release()
                        started.release()
                    }
                    return (index, await run(job, interruption: interruption, receivedAll: place.release))
                }
            }
            for await (index, status) in group { ended[index] = status }
        }
        let statuses = ended.sorted { $0.key < $1.key }.map(\.value)
        // Ctrl-C after every download had ended (one in its last step, say) changes nothing.
        if interruption.happened, statuses.count < jobs.count || statuses.contains(.interrupted) {
            let unsaved = jobs.filter { $0.task != nil && $0.task?.state != .completed && DownloadSession.journal(for: $0.output) == nil }
            if unsaved.isEmpty {
                reporter.note("interrupted; the journal is saved — run the same command again to resume")
            } else {
                reporter.note("interrupted; no journal could be saved for \(unsaved.map(\.output.path).joined(separator: ", ")): "
                    + "running the command again starts those over")
            }
            reporter.summarize(jobs)
            return .interrupted
        }
        reporter.summarize(jobs)
        return statuses.first { $0 != .success } ?? .success
    }

    /// How many downloads may sync and rename beside the N receiving: as many again, less
    /// where the descriptor limit is low (one receiving uses about six descriptors, one
    /// finishing about four), none with -j 1.
    static func placesWhileFinishing(concurrency: Int) -> Int {
        guard concurrency > 1 else { return 0 }
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        let available = Int(clamping: limit.rlim_cur) - 64 - 6 * min(concurrency, 1 << 20)
        return max(0, min(concurrency, available / 4))
    }

    private func run(_ job: Job, interruption: Interruption, receivedAll: @escaping @Sendable () -> Void) async -> ExitStatus {
        let (digest, missing) = command.expectedDigest(for: job, sums: sums)
        if missing {
            reporter.failed(job, message: "the checksum file lists no digest for \(job.output.lastPathComponent)",
                            status: .usage)
            return .usage
        }
        if DownloadSession.undoInterruptedTakeover(for: job.output) {
            reporter.note("\(job.output.lastPathComponent): an earlier -c was stopped while taking over the file; "
                          + "it is back under its name, as it was")
        }
        let resumeData: Data?
        switch await continueWithoutJournal(job, digest: digest, interruption: interruption) {
        case .done(let status)?:
            return status
        case .resume(let data)?:
            resumeData = data
        case nil:
            do {
                resumeData = try journal(for: job)
            } catch let status as ExitStatus {
                return status
            } catch Finished.already {
                return finishedEarlier(job, digest: digest)
            } catch {
                return .networkError
            }
        }
        // How many bytes at the start were another program's file, when -c took one over (now
        // or in an earlier run): what a failure's message says became of them.
        let adopted = resumeData.flatMap { try? ResumeData($0) }?.adoptedPrefix
        if resumeData == nil, command.habits.timestamping, let local = Timestamping.modificationTime(of: job.output.path) {
            guard let probe = await probe(job.primary, unless: interruption) else {
                reporter.failed(job, message: "interrupted", status: .interrupted)
                return .interrupted
            }
            if let remote = probe.lastModified.flatMap(Timestamping.seconds(ofHTTPDate:)), remote <= local {
                reporter.note("\(job.output.lastPathComponent) is up to date (the server's copy is not newer); not fetched")
                job.outcome = .init(succeeded: true, message: "up to date", bytes: probe.length, seconds: 0, bytesThisRun: 0)
                return .success
            }
        }
        if resumeData == nil, let status = await keptFromEarlierRun(job, digest: digest, interruption: interruption) { return status }
        if resumeData == nil, let problem = existingOutputProblem(job) {
            reporter.failed(job, message: problem, status: .diskError)
            return .diskError
        }
        reporter.started(job)
        Logger(label: "haul").info("downloading", metadata: [
            "url": "\(job.primary.withoutCredentials.absoluteString)", "output": "\(job.output.path)",
            "mirrors": "\(job.mirrors.count)", "connections": "up to \(session.configuration.connectionsPerDownload)",
            "resume": "\(resumeData == nil ? "no, from byte 0" : "yes, from the journal")",
        ])
        do {
            if let resumeData {
                do {
                    try await download(job, task: resumedTask(job, resumeData),
                                       digest: digest, interruption: interruption, receivedAll: receivedAll)
                } catch HaulError.resumeDataInvalid(let reason) where !command.continueDownload {
                    reporter.note("\(job.output.lastPathComponent): cannot resume (\(reason)); starting over")
                    try await download(job, task: newTask(job),
                                       digest: digest, interruption: interruption, receivedAll: receivedAll)
                }
            } else {
                try await download(job, task: newTask(job),
                                   digest: digest, interruption: interruption, receivedAll: receivedAll)
            }
        } catch {
            if interruption.happened {
                reporter.failed(job, message: "interrupted", status: .interrupted)
                return .interrupted
            }
            let status = ExitStatus(for: error)
            reporter.failed(job, message: failureMessage(job, error: error, adopted: adopted), status: status)
            return status
        }
        renameFromContentDisposition(job)
        if command.habits.timestamping,
           let modified = (job.task?.response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Last-Modified"),
           let seconds = Timestamping.seconds(ofHTTPDate: modified) {
            // Through the directory the file was written in, never a path looked up again.
            job.task?.setFinishedFileModificationTime(seconds)
        }
        job.task?.releaseFinishedFile()
        reporter.finished(job)
        if let hook = command.habits.onComplete { await OnComplete.run(hook, for: job, reporter: reporter) }
        return .success
    }

    private func download(_ job: Job, task: DownloadTask, digest: String?, interruption: Interruption,
                          receivedAll: @escaping @Sendable () -> Void) async throws {
        task.expectedSHA256 = digest
        task.onReceivedAll = receivedAll
        // For the rename to a server's name and -N's time stamp, released after them.
        task.keepsFinishedFile = true
        if job.metalink == nil { task.mirrors = job.mirrors }
        job.task = task
        if interruption.happened { task.cancel() }
        shares.add(task)
        defer { shares.remove(task) }
        let events = task.events
        task.resume()
        for try await event in events {
            if case .resumed(let offset, _) = event { job.resumedFrom = offset }
        }
    }

    /// A download that an earlier run finished (but was stopped before removing its journal):
    /// checked against the digest given now, if any, and reported as done.
    private func finishedEarlier(_ job: Job, digest: String?) -> ExitStatus {
        if let digest {
            guard let wanted = SHA256Digest(expected: digest)?.hex else {
                reporter.failed(job, message: "'\(digest)' is not a SHA-256 digest", status: .usage)
                return .usage
            }
            let actual = (try? SHA256.hex(ofFileAt: job.output.path)) ?? "unreadable"
            guard actual == wanted else {
                reporter.failed(job, message: "\(job.output.path) is complete but its SHA-256 is \(actual), not \(wanted)",
                                status: .checksumMismatch)
                return .checksumMismatch
            }
        }
        var info = stat()
        let size = lstat(job.output.path, &info) == 0 ? Int64(info.st_size) : nil
        job.outcome = .init(succeeded: true, message: "already complete", bytes: size, seconds: 0, bytesThisRun: 0)
        return .success
    }

    /// What a failed download's error says, and with `-c` what became of the bytes on disk.
    private func failureMessage(_ job: Job, error: any Error, adopted: Int64?) -> String {
        guard let error = error as? HaulError else { return error.localizedDescription }
        var message = error.localizedDescription
        switch error {
        case .diskFull(let path, _) where DownloadSession.journal(for: job.output) == nil:
            // No journal (the server's answer allows no resuming, or the full disk took the
            // journal too): the bytes kept cannot be used by the next run.
            let partial = DownloadSession.partialFileURL(for: job.output).path
            var info = stat()
            message = "no space left on the device writing \(path); no journal could be kept for it, so it cannot resume: "
                + "free some space and run the command again to start over"
            if lstat(partial, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
                message += "; what was written is in \(partial): delete it to free its space"
            }
        case .destinationExists, .notARegularFile:
            if DownloadSession.journal(for: job.output) != nil {
                message += "; the download is kept beside it: run the same command again once the name is free"
                    + (command.force ? "" : " (or with --force to replace a regular file)")
            }
        default: break
        }
        if command.continueDownload, case .remoteFileChanged(let reason) = error {
            message = "cannot continue: the file changed on the server (\(reason)); -c never starts over — "
                + "run without -c to download the new version"
            if adopted == nil, DownloadSession.journal(for: job.output) != nil {
                message += " (the partial file and its journal are kept until then)"
            }
        }
        var info = stat()
        if let adopted, lstat(job.output.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int64(info.st_size) == adopted {
            message += "; \(job.output.path) is left as it was found (\(Format.bytes(adopted)))"
        } else if adopted != nil, DownloadSession.journal(for: job.output) != nil {
            // Its bytes went on in the partial file: say where, and how to go on.
            message += "; the bytes of \(job.output.lastPathComponent) are kept, with what was fetched, in "
                + "\(DownloadSession.partialFileURL(for: job.output).path): run the same command to continue"
        } else if let adopted, lstat(DownloadSession.partialFileURL(for: job.output).path, &info) == 0 {
            // It could not go back: something took its name meanwhile.
            message += "; the first \(Format.bytes(adopted)) of \(DownloadSession.partialFileURL(for: job.output).path) are "
                + "the file's bytes as they were found (its name was taken meanwhile): move it back to keep them"
        }
        return message
    }

    /// Why the output cannot be written, when something is already there: anything but a
    /// regular file is never replaced, and a regular file only with --force.
    private func existingOutputProblem(_ job: Job) -> String? {
        var info = stat()
        guard lstat(job.output.path, &info) == 0 else { return nil }
        if info.st_mode & S_IFMT != S_IFREG {
            return "\(job.output.path) is not a regular file (a directory, link or device); haul never replaces one, choose another name"
        }
        return command.force || command.habits.timestamping ? nil : "\(job.output.path) exists; use --force to overwrite it"
    }

    /// The resume data in the journal beside the job's output, if it is for the same URL.
    private func journal(for job: Job) throws -> Data? {
        let path = DownloadSession.journalURL(for: job.output)
        guard let data = DownloadSession.journal(for: job.output) else {
            if command.continueDownload {
                reporter.failed(job, message: "nothing to continue: there is no journal at \(path.path) (run without -c to start)",
                                status: .diskError)
                throw ExitStatus.diskError
            }
            return nil
        }
        if command.noResume {
            // Another program's file that a -c run took over goes back as it was, not emptied.
            if DownloadSession.giveBackAdoptedFile(for: job.output) {
                reporter.note("\(job.output.lastPathComponent): the file an earlier -c took over from another program is "
                              + "back under its name, as it was")
            }
            // Not removed here: the fresh download removes it once it holds the partial file's
            // lock, so a download still running keeps its journal.
            return nil
        }
        do {
            var resume = try ResumeData(data)
            if DownloadSession.finishedBeforeStopping(job.output, resume: resume) {
                // Stopped in its last step, after every check: the file is whole and in place.
                reporter.note("\(job.output.lastPathComponent) was already complete (the last run was stopped while "
                              + "putting it in place); its journal is removed")
                throw Finished.already
            }
            // Any source of the file will do: with --mirror-select the primary may differ per run.
            // A journal never holds a password: compare without, and give it back in memory.
            let sources = [job.url, job.primary] + job.mirrors
            guard let source = sources.first(where: { $0.withoutCredentials == resume.url.withoutCredentials }) else {
                return try startOver(job, "the journal at \(path.path) is for \(resume.url.withoutCredentials.absoluteString)")
            }
            reporter.note("\(job.output.lastPathComponent): resuming: \(Format.bytes(resume.bytesDone)) of "
                + "\(Format.bytes(resume.length)) already downloaded (\(resume.length > 0 ? resume.bytesDone * 100 / resume.length : 0)%)")
            if command.mirrorSelect == .first, !command.sameFile, source.withoutCredentials != job.url.withoutCredentials {
                // Written by a download from what is a mirror here (not vouched for with --same-file):
                // the download is the URL's, so the bytes on disk are held to the URL's answer
                // (another version starts over).
                resume.url = job.url
                resume.finalURL = nil
                return resume.encoded()
            }
            if source.user != nil {
                resume.url = source
                return resume.encoded()
            }
            return data
        } catch let error as HaulError {
            return try startOver(job, error.localizedDescription)
        }
    }

    private func startOver(_ job: Job, _ reason: String) throws -> Data? {
        if command.continueDownload {
            reporter.failed(job, message: "cannot continue: \(reason) (run without -c to start over)", status: .diskError)
            throw ExitStatus.diskError
        }
        reporter.note("\(job.output.lastPathComponent): cannot resume (\(reason)); starting over")
        return nil
    }

    /// Without -o, a server's Content-Disposition name wins over the URL's, within the same
    /// directory. A name the server chose never replaces anything unless
    /// --force-server-names, and then only a regular file that is not hidden (the name itself
    /// never starts with a dot).
    private func renameFromContentDisposition(_ job: Job) {
        guard command.output == nil,
              let header = job.task?.firstResponseField("Content-Disposition"),
              let name = OutputName.from(contentDisposition: header), name != job.output.lastPathComponent else { return }
        let wanted = job.output.deletingLastPathComponent().appendingPathComponent(name).standardizedFileURL.path
        if reserved.contains(wanted) {
            reporter.note("kept \(job.output.lastPathComponent): \(name) (from Content-Disposition) is another download of this run")
            return
        }
        do throws(HaulError) {
            guard let task = job.task else { return }
            // Within the directory held since the download began: one swapped for a link
            // meanwhile is never followed.
            let renamed = try task.renameFinishedFile(to: name, replacing: command.forceServerNames)
            job.output = job.output.deletingLastPathComponent().appendingPathComponent(renamed.lastPathComponent)
        } catch {
            let reason: String
            switch error {
            case .destinationExists: reason = "exists; --force-server-names lets a server's name replace a file"
            case .notARegularFile: reason = "is not a regular file and is never replaced"
            default: reason = "cannot be used (\(error))"
            }
            reporter.note("kept \(job.output.lastPathComponent): \(name) (from Content-Disposition) \(reason)")
        }
    }
}

