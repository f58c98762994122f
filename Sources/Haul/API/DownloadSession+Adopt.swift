import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension DownloadSession {
    /// Makes the first `prefix` bytes of the regular file at `destination` (another program's
    /// partial download, which the caller has compared with the server) the start of a
    /// download of `url`: the file becomes the partial file beside `destination` (renamed
    /// through the placement root, never replacing anything), is extended to `length`, and
    /// resume data recording `0..<prefix` as done is returned for
    /// `downloadTask(withResumeData:to:)`. The caller vouches for the prefix; the validators
    /// given are sent as `If-Range` so a file that changed on the server is not spliced. A
    /// download that then ends for good without a result (a digest that does not match, the
    /// file changed on the server) puts the file back at `destination`, cut to `prefix` bytes.
    ///
    /// The journal is written first, durably, so a process killed at any step leaves either
    /// a journal that continues the download or one that `undoInterruptedTakeover(for:)`
    /// recognises: the file is never left hidden with nothing pointing at it.
    package static func adoptPartialFile(at destination: URL, url: URL, length: Int64, prefix: Int64, etag: String?,
                                         lastModified: String?, expectedSHA256: String?) throws(HaulError) -> Data {
        let name = destination.lastPathComponent
        guard PlacementRoot.isValidName(name) else { throw .invalidFileName(name) }
        guard prefix > 0, prefix < length else {
            throw .resumeDataInvalid(reason: "a partial file must hold between 1 byte and less than the whole file")
        }
        let root = try PlacementRoot(directory: destination.deletingLastPathComponent().path)
        let partName = SideNames.partial(for: name)
        let journal = Journal(root: root, name: SideNames.journal(for: name))
        let file = try root.openExisting(name, displayPath: destination.path)
        defer { file.close() }
        var renamed = false
        do throws(HaulError) {
            var identity = try file.identity()
            identity.path = root.location(of: partName)
            identity.size = length
            let sampled = min(prefix, 1 << 20)
            let sample = file.sha256(offset: 0, count: Int(sampled)).map { ResumeData.Sample(offset: 0, length: sampled, sha256: $0) }
            var resume = ResumeData(url: url, finalURL: nil, headers: [], etag: etag, lastModified: lastModified,
                                    length: length, tempFile: identity, sample: sample, doneRanges: [0..<prefix],
                                    syncedRanges: [], bootID: currentBootID(), destination: destination.path,
                                    expectedSHA256: expectedSHA256)
            // Should the download end without a result, the file goes back as it was found.
            resume.adoptedPrefix = prefix
            let data = resume.encoded()
            try journal.write(data, durable: true)
            try root.publish(name, to: partName, replacing: false)
            renamed = true
            try file.setLength(length)
            return data
        } catch {
            // Give the file back under its own name, as it was.
            try? file.setLength(prefix)
            if renamed { try? root.publish(partName, to: name, replacing: false) }
            journal.remove()
            throw error
        }
    }

    /// Undoes a takeover by `adoptPartialFile` that a killed process left half done (its
    /// journal written, the file not yet renamed, or renamed but not yet extended): the journal
    /// goes and the file is (back) under its own name, as it was found. `true` when that was
    /// the case; anything else is left alone.
    package static func undoInterruptedTakeover(for destination: URL) -> Bool {
        guard let (root, name, resume, prefix) = adoptedJournal(for: destination) else { return false }
        func isRecorded(_ info: stat?) -> Bool {
            guard let info, info.st_mode & S_IFMT == S_IFREG else { return false }
            return UInt64(info.st_dev) == resume.tempFile.device && UInt64(info.st_ino) == resume.tempFile.inode
                && Int64(info.st_size) == prefix
        }
        let partName = SideNames.partial(for: name)
        let partial = try? root.status(of: partName)
        let named = try? root.status(of: name)
        if partial == nil, isRecorded(named) {
            // Stopped before the rename.
        } else if named == nil, isRecorded(partial) {
            // Stopped before the file was extended.
            guard (try? root.publish(partName, to: name, replacing: false)) != nil else { return false }
        } else {
            return false
        }
        Journal(root: root, name: SideNames.journal(for: name)).remove()
        return true
    }

    /// Puts another program's file that a `-c` download took over back under its own name, cut
    /// to the bytes it held, and removes the journal (for a caller that decided to start
    /// over). `false` when the journal is not such a download's, or the name is taken.
    package static func giveBackAdoptedFile(for destination: URL) -> Bool {
        guard let (root, name, resume, prefix) = adoptedJournal(for: destination) else { return false }
        let partName = SideNames.partial(for: name)
        guard let file = try? root.openExisting(partName, displayPath: destination.path) else { return false }
        defer { file.close() }
        guard let identity = try? file.identity(), identity.device == resume.tempFile.device,
              identity.inode == resume.tempFile.inode, (try? file.setLength(prefix)) != nil,
              (try? root.publish(file, named: partName, to: name, replacing: false)) != nil else { return false }
        Journal(root: root, name: SideNames.journal(for: name)).remove()
        return true
    }

    /// The journal beside `destination` when it is a takeover's (`adoptedPrefix`), with the
    /// directory it is in (held open) and the destination's name.
    private static func adoptedJournal(for destination: URL)
        -> (root: PlacementRoot, name: String, resume: ResumeData, prefix: Int64)? {
        let name = destination.lastPathComponent
        guard PlacementRoot.isValidName(name), let root = try? PlacementRoot(directory: destination.deletingLastPathComponent().path),
              let data = Journal(root: root, name: SideNames.journal(for: name)).read(),
              let resume = try? ResumeData(data), let prefix = resume.adoptedPrefix else { return nil }
        return (root, name, resume, prefix)
    }
}
