import Foundation
import Haul
#if canImport(Glibc)
import Glibc
#endif

extension Runner {
    /// `-c` with a file at the output and no journal of haul's: a file that is already whole is
    /// checked (against the expected digest, else the server's, else its last 64 KiB against the
    /// server's bytes) and kept without a download; anything else fails, as `-c` never starts
    /// over. `nil` when this does not apply.
    func continueWithoutJournal(_ job: Job, digest: String?) async -> ExitStatus? {
        guard command.continueDownload, DownloadSession.journal(for: job.output) == nil else { return nil }
        var info = stat()
        guard lstat(job.output.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        let size = Int64(info.st_size)
        let name = job.output.path
        let probe = await session.probe(job.primary)
        guard let length = probe.length, let status = probe.status, (200..<300).contains(status) else {
            let reason = probe.status.map { "the server answered HTTP \($0)" } ?? probe.error ?? "no answer"
            reporter.failed(job, message: "cannot check \(name) against the server: \(reason)", status: .networkError)
            return .networkError
        }
        guard size == length else {
            let what = size < length ? "holds \(Format.bytes(size)) of the server's \(Format.bytes(length)) but has no haul journal"
                : "is larger (\(Format.bytes(size))) than the server's file (\(Format.bytes(length)))"
            reporter.failed(job, message: "cannot continue: \(name) \(what); -c never starts over — run without -c "
                            + "and with --force to fetch it again", status: .diskError)
            return .diskError
        }
        let checked: String
        if let expected = digest ?? probe.sha256.map({ "sha-256=" + $0 }) {
            let wanted = expected.lowercased().replacingOccurrences(of: "sha-256=", with: "")
            guard let actual = try? SHA256.hex(ofFileAt: name) else {
                reporter.failed(job, message: "cannot read \(name)", status: .diskError)
                return .diskError
            }
            guard wanted.count != 64 || actual == wanted else {
                reporter.failed(job, message: "\(name) is complete in size but its SHA-256 is \(actual), not \(wanted); "
                                + "-c never starts over — run without -c and with --force", status: .checksumMismatch)
                return .checksumMismatch
            }
            checked = wanted.count == 64 ? "its SHA-256 matches" : "its size matches"
        } else {
            let count = min(Int64(64 << 10), size)
            let remote = await session.fetchBytes(job.primary, from: size - count, count: count)
            let local = readTail(name, from: size - count, count: Int(count))
            guard let remote, remote == local else {
                reporter.failed(job, message: "\(name) is complete in size but its last \(Format.bytes(count)) differ from "
                                + "the server's; -c never starts over — run without -c and with --force", status: .diskError)
                return .diskError
            }
            checked = "its last \(Format.bytes(count)) match the server's"
        }
        reporter.note("\(job.output.lastPathComponent) is already complete (\(checked)); nothing to fetch")
        job.outcome = .init(succeeded: true, message: "already complete", bytes: size, seconds: 0, bytesThisRun: 0)
        return .success
    }

    /// `count` bytes of the file at `path` from `offset`, read without following a link.
    private func readTail(_ path: String, from offset: Int64, count: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return read == count ? bytes : nil
    }
}
