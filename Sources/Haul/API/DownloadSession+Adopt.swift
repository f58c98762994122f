import Foundation

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
    package static func adoptPartialFile(at destination: URL, url: URL, length: Int64, prefix: Int64, etag: String?,
                                         lastModified: String?, expectedSHA256: String?) throws(HaulError) -> Data {
        let name = destination.lastPathComponent
        guard PlacementRoot.isValidName(name) else { throw .invalidFileName(name) }
        guard prefix > 0, prefix < length else {
            throw .resumeDataInvalid(reason: "a partial file must hold between 1 byte and less than the whole file")
        }
        let root = try PlacementRoot(directory: destination.deletingLastPathComponent().path)
        let partName = SideNames.partial(for: name)
        try root.publish(name, to: partName, replacing: false)
        var opened: DataFile?
        do throws(HaulError) {
            let file = try root.openExisting(partName, displayPath: destination.path)
            opened = file
            try file.setLength(length)
            let identity = try file.identity()
            let sampled = min(prefix, 1 << 20)
            let sample = file.sha256(offset: 0, count: Int(sampled)).map { ResumeData.Sample(offset: 0, length: sampled, sha256: $0) }
            var resume = ResumeData(url: url, finalURL: nil, headers: [], etag: etag, lastModified: lastModified,
                                    length: length, tempFile: identity, sample: sample, doneRanges: [0..<prefix],
                                    syncedRanges: [], bootID: currentBootID(), destination: destination.path,
                                    expectedSHA256: expectedSHA256)
            // Should the download end without a result, the file goes back as it was found.
            resume.adoptedPrefix = prefix
            let data = resume.encoded()
            // At once, not when the download first saves: a process killed now leaves the file
            // with a journal that continues it, never a partial file that a fresh start empties.
            try Journal(root: root, name: SideNames.journal(for: name)).write(data, durable: true)
            file.close()
            return data
        } catch {
            // Give the file back under its own name, as it was.
            if let opened {
                try? opened.setLength(prefix)
                opened.close()
            }
            try? root.publish(partName, to: name, replacing: false)
            throw error
        }
    }
}
