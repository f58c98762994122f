import Dispatch
import Foundation
import Haul
#if canImport(Glibc)
import Glibc
#endif

extension Runner {
    /// A file at the output that an earlier run finished from this URL (its `FinishedRecord`
    /// says so): kept without a download when it is still the server's file (see
    /// `checkEarlier`); otherwise reported as existing, with the reason. Rerunning an
    /// interrupted batch thus finishes it: the journalled files resume, the others start, and
    /// the finished ones stay. `nil` when there is no such file (the usual rules apply).
    func keptFromEarlierRun(_ job: Job, digest: String?, interruption: Interruption) async -> ExitStatus? {
        guard job.metalink == nil, !command.force, !command.habits.timestamping, !command.continueDownload,
              let earlier = EarlierDownload.at(job.output.path, from: [job.url, job.primary] + job.mirrors),
              earlier.record.length > 0 else { return nil }
        let path = job.output.path
        func refused(_ reason: String, _ status: ExitStatus) -> ExitStatus {
            reporter.failed(job, message: "\(path) exists; use --force to overwrite it (an earlier run downloaded it, but \(reason))",
                            status: status)
            return status
        }
        guard let probe = await probe(job.primary, unless: interruption) else {
            reporter.failed(job, message: "interrupted", status: .interrupted)
            return .interrupted
        }
        guard let status = probe.status else {
            return refused("the server could not be asked whether it still has that version: \(probe.error ?? "no answer"); "
                           + "run again to check", .networkError)
        }
        guard (200..<300).contains(status) else { return refused("the server now answers HTTP \(status)", .httpError) }
        switch await checkEarlier(earlier, job, probe: probe, digest: digest, stop: { interruption.happened }) {
        case .keep:
            reporter.note("\(job.output.lastPathComponent) is already here: an earlier run downloaded it and the server still "
                          + "has that version (\(Self.sameVersionEvidence(earlier.record)), its ends compared, its bytes "
                          + "unchanged since); not fetched")
            job.outcome = .init(succeeded: true, message: "already complete", bytes: earlier.size, seconds: 0, bytesThisRun: 0)
            return .success
        case .refuse(let reason, let status):
            return refused(reason, status)
        case .unusable(let message, let status):
            reporter.failed(job, message: message, status: status)
            return status
        }
    }

    /// What `checkEarlier` found.
    enum EarlierVerdict {
        /// Still the server's file.
        case keep
        /// Not kept, and why (to follow "an earlier run downloaded it, but").
        case refuse(String, ExitStatus)
        /// Nothing could be decided: the whole message (a digest that cannot be read, Ctrl-C).
        case unusable(String, ExitStatus)
    }

    /// Whether a file an earlier run finished is still the server's file: a file of this user
    /// with no other name, the same length as its record and the server's, the same strong
    /// `ETag` (else `Last-Modified`), no other digest from the user or the server, its first and
    /// last 64 KiB the server's bytes, its bytes still hashing to the record (hashed off the
    /// task pool, given up on Ctrl-C), and still the file at the output after all that
    /// (`endsCompared`: the caller has compared the ends already). The record is read from
    /// disk, so it is only a claim: each check stands on its own.
    func checkEarlier(_ earlier: EarlierDownload, _ job: Job, probe: DownloadProbe, digest: String?, endsCompared: Bool = false,
                      stop: @escaping @Sendable () -> Bool) async -> EarlierVerdict {
        let record = earlier.record
        guard earlier.owner == getuid() else { return .refuse("it belongs to another user", .diskError) }
        guard earlier.links == 1 else { return .refuse("it has \(earlier.links) hard links", .diskError) }
        guard earlier.size == record.length else { return .refuse("its bytes have changed since", .diskError) }
        if let digest {
            guard let wanted = SHA256Digest(expected: digest)?.hex else {
                return .unusable("'\(digest)' is not a SHA-256 digest", .usage)
            }
            guard wanted == record.sha256 else {
                return .refuse("its SHA-256 is \(record.sha256), not the \(wanted) given", .diskError)
            }
        }
        if let difference = Self.versionDifference(record, probe) { return .refuse(difference, .diskError) }
        if !endsCompared {
            guard probe.supportsRanges else {
                return .refuse("the server does not serve byte ranges, so its bytes cannot be compared with the file's", .diskError)
            }
            do {
                if let part = try await differingSample(job, size: earlier.size, local: { earlier.bytes(at: $0, count: $1) }) {
                    return .refuse("\(part) differ from the server's", .diskError)
                }
            } catch {
                switch error {
                case .network(let reason):
                    return .refuse("its ends could not be compared with the server's: \(reason); run again to check", .networkError)
                case .local: return .refuse("it could not be read", .diskError)
                }
            }
        }
        let matches = await withCheckedContinuation { (done: CheckedContinuation<Bool?, Never>) in
            DispatchQueue.global().async { done.resume(returning: earlier.matchesRecord(stop: stop)) }
        }
        if stop() { return .unusable("interrupted", .interrupted) }
        guard let matches else { return .refuse("it could not be read", .diskError) }
        guard matches else { return .refuse("its bytes have changed since", .diskError) }
        guard earlier.isStill(at: job.output.path) else { return .refuse("it was changed or replaced while it was checked", .diskError) }
        return .keep
    }

    /// How the server's answer now differs from the version a record describes; `nil` when it is
    /// the same version: the same length and the same strong `ETag` (else, with no strong ETag
    /// recorded, an unchanged weak one and the same `Last-Modified`), and no other digest. A
    /// server that gives no strong ETag and no Last-Modified cannot show it still has the same
    /// version, so that is a difference too.
    static func versionDifference(_ record: FinishedRecord, _ probe: DownloadProbe) -> String? {
        guard let length = probe.length else { return "the server no longer says how long its file is" }
        guard length == record.length else {
            return "the server's file is now \(length) bytes, not \(record.length): it has changed"
        }
        if let etag = record.etag, probe.etag != etag {
            return probe.etag.map { "the server's file has changed (its ETag is now \($0), not \(etag))" }
                ?? "the server no longer gives the file's ETag (it was \(etag))"
        }
        // The same strong ETag is the same bytes; anything less needs the same Last-Modified too.
        if record.etag.map({ $0.hasPrefix("W/") }) ?? true {
            guard let modified = record.lastModified else {
                return record.etag == nil ? "the server gives no ETag or Last-Modified to show it still has that version"
                    : "the server gives only a weak ETag and no Last-Modified, which cannot show it still has the same bytes"
            }
            guard probe.lastModified == modified else {
                return probe.lastModified.map { "the server's file has changed (its Last-Modified is now \($0), not \(modified))" }
                    ?? "the server no longer gives the file's Last-Modified (it was \(modified))"
            }
        }
        if let served = probe.sha256, served != record.sha256 {
            return "the server's SHA-256 is now \(served), not \(record.sha256)"
        }
        return nil
    }

    /// What showed the server's file to be the recorded version, for messages.
    static func sameVersionEvidence(_ record: FinishedRecord) -> String {
        if let etag = record.etag, !etag.hasPrefix("W/") { return "same length and ETag" }
        return "same length and Last-Modified"
    }
}
