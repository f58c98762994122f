import Foundation

extension Metalink {
    /// Describes the file at `path` (size, SHA-256, piece SHA-256s) and writes the metalink to
    /// `output` through the output directory's `PlacementRoot`: written under a side name and
    /// renamed into place, never through a link, and an existing file is kept unless `replacing`.
    /// - Returns: the metalink written.
    package static func publish(fileAt path: String, name: String, pieceLength: Int64, sources: [Source],
                                to output: URL, replacing: Bool) throws(HaulError) -> Metalink {
        let target = output.lastPathComponent
        guard PlacementRoot.isValidName(target) else { throw .invalidFileName(target) }
        let root = try PlacementRoot(directory: output.deletingLastPathComponent().path)
        if let existing = try root.status(of: target) {
            guard existing.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: root.location(of: target)) }
            guard replacing else { throw .destinationExists(path: root.location(of: target)) }
        }
        let file = try describe(fileAt: path, name: name, pieceLength: pieceLength, sources: sources)
        let metalink = Metalink(unchecked: [file])
        try root.writeAtomically(target, data: metalink.xmlData(), durable: true)
        return metalink
    }

    /// A metalink of files already checked.
    init(unchecked files: [File]) {
        self.files = files
    }
}
