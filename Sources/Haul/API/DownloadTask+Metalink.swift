import Foundation

/// What a task made from a metalink downloads: one file, its sources in order, and the
/// directory its name is resolved in.
struct MetalinkRequest: Sendable {
    var file: Metalink.File
    /// The output directory (the name's subdirectories are made inside it); `nil` hands the
    /// file to the delegate at a temporary location.
    var directory: URL?
}

extension DownloadTask {
    /// The expected digest and pieces from the metalink (its SHA-256, else its SHA-512).
    func applyMetalink(to settings: inout DownloadOperation.Settings) {
        guard let file = metalink?.file, let hash = file.strongHash else { return }
        // The metalink's hashes identify the file: mirrors are held to its length, not to
        // validators that differ from server to server.
        settings.engine.identifiedByHashes = true
        settings.metalinkSize = file.size
        if let pieces = file.pieces, file.size != nil {
            settings.pieces = pieces
            // Piece hashes check every byte; a seam mismatch would only restart the whole file.
            settings.engine.seamOverlap = 0
        }
        switch hash.algorithm {
        case .sha256?:
            if settings.expectedSHA256 == nil, let digest = SHA256Digest(bytes: hash.value) {
                settings.expectedSHA256 = digest
                settings.expectedSource = .metalink
            }
        case .sha512?:
            if settings.expectedSHA256 == nil { settings.expectedSHA512 = hash.value }
        case nil:
            break
        }
    }

    /// Where a metalink download's files go: the name's directories are made inside the output
    /// directory (never through a link; those it made are removed again if the download fails
    /// and they are empty), the partial file and journal sit beside the file.
    func metalinkFiles(resume: ResumeData?) throws(HaulError) -> DownloadOperation.Files? {
        guard let request = metalink, let directory = request.directory else { return nil }
        let components = MetalinkName.components(of: request.file.name)
        guard let name = components.last else { throw .invalidFileName(request.file.name) }
        let top = try PlacementRoot(directory: directory.path)
        var made: [MadeDirectory] = []
        let root = try top.subdirectory(Array(components.dropLast()), creating: true, made: &made)
        let replaces = replacesExistingFileOverride ?? session.configuration.replacesExistingFiles
        return .init(root: root, partName: SideNames.partial(for: name), journalName: SideNames.journal(for: name),
                     destinationRoot: root, destinationName: name, isBesideDestination: true,
                     replacesDestination: replaces, madeDirectories: made)
    }
}
