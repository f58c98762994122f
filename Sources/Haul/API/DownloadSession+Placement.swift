import Foundation

extension DownloadSession {
    /// Gives a finished download at `file` the name `name` in the same directory, by the rules
    /// every download follows: `name` must be one path component; without `replacing` an
    /// existing entry is never touched (`HaulError.destinationExists`); with it only a regular
    /// file is replaced (`HaulError.notARegularFile` otherwise). Returns the new location.
    ///
    /// For callers that learn a better name once the file is there (a server's
    /// `Content-Disposition`), so the rename is as safe as the download's own.
    public static func renameDownloadedFile(at file: URL, to name: String, replacing: Bool) throws(HaulError) -> URL {
        guard PlacementRoot.isValidName(name) else { throw .invalidFileName(name) }
        let root = try PlacementRoot(directory: file.deletingLastPathComponent().path)
        try root.publish(file.lastPathComponent, to: name, replacing: replacing)
        return file.deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Removes the journal a download to `destination` left (to start over rather than
    /// resume); the partial file is emptied when the next download to `destination` starts.
    public static func removeJournal(for destination: URL) throws(HaulError) {
        let root = try PlacementRoot(directory: destination.deletingLastPathComponent().path)
        Journal(root: root, name: SideNames.journal(for: destination.lastPathComponent)).remove()
    }

    /// Removes what an unfinished download to `destination` left: its journal and its partial
    /// file (only a regular file; anything else there is left alone). The destination itself is
    /// never touched.
    public static func removePartialDownload(for destination: URL) throws(HaulError) {
        let name = destination.lastPathComponent
        guard PlacementRoot.isValidName(name) else { throw .invalidFileName(name) }
        let root = try PlacementRoot(directory: destination.deletingLastPathComponent().path)
        Journal(root: root, name: SideNames.journal(for: name)).remove()
        let partial = SideNames.partial(for: name)
        if let status = try root.status(of: partial), status.st_mode & S_IFMT == S_IFREG { root.remove(partial) }
    }

    /// Whether the download that wrote `resume` (the journal beside `destination`) had already
    /// put its file in place when it was stopped: `destination` is then the very inode its
    /// partial file was, which only the last step, after every check, makes it. What that step
    /// left (the journal, the partial file's second name) is removed; the file is kept.
    package static func finishedBeforeStopping(_ destination: URL, resume: ResumeData) -> Bool {
        let name = destination.lastPathComponent
        guard PlacementRoot.isValidName(name), let root = try? PlacementRoot(directory: destination.deletingLastPathComponent().path),
              let placed = try? root.status(of: name), placed.st_mode & S_IFMT == S_IFREG,
              UInt64(placed.st_dev) == resume.tempFile.device, UInt64(placed.st_ino) == resume.tempFile.inode,
              Int64(placed.st_size) == resume.length else { return false }
        let partial = SideNames.partial(for: name)
        if let left = try? root.status(of: partial), left.st_dev == placed.st_dev, left.st_ino == placed.st_ino {
            root.remove(partial)
        }
        Journal(root: root, name: SideNames.journal(for: name)).remove()
        return true
    }

    /// The journal a download to `destination` left, if one is there (a regular file of this
    /// user's, read without following links).
    public static func journal(for destination: URL) -> Data? {
        guard let root = try? PlacementRoot(directory: destination.deletingLastPathComponent().path) else { return nil }
        return Journal(root: root, name: SideNames.journal(for: destination.lastPathComponent)).read()
    }
}

extension DownloadSession {
    /// The journal a download to `name` inside `root` left (`name` a relative path, `/`
    /// between components, whose directories are entered without following links); `nil` when
    /// there is none.
    package static func journal(forName name: String, in root: PlacementRoot) -> Data? {
        guard let (directory, last) = try? resolve(name, in: root) else { return nil }
        return Journal(root: directory, name: SideNames.journal(for: last)).read()
    }

    /// Whether `name` has the form of the partial file's or the journal's name of some download
    /// (`.NAME.haul-part`, `.NAME.haul-journal`): no download may be given it.
    package static func isSideName(_ name: String) -> Bool { SideNames.isSideName(name) }

    /// Removes what an unfinished download to `name` inside `root` left (its journal, and its
    /// partial file if that is a regular file), entering directories without following links.
    package static func removePartialDownload(named name: String, in root: PlacementRoot) {
        guard let (directory, last) = try? resolve(name, in: root) else { return }
        Journal(root: directory, name: SideNames.journal(for: last)).remove()
        let partial = SideNames.partial(for: last)
        if let status = try? directory.status(of: partial), status.st_mode & S_IFMT == S_IFREG { directory.remove(partial) }
    }

    /// The directory of `name` inside `root` (never through a link) and its last component.
    private static func resolve(_ name: String, in root: PlacementRoot) throws(HaulError) -> (PlacementRoot, String) {
        let components = name.split(separator: "/").map(String.init)
        guard let last = components.last, PlacementRoot.isValidName(last) else { throw .invalidFileName(name) }
        let folders = Array(components.dropLast())
        return (folders.isEmpty ? root : try root.subdirectory(folders, creating: false), last)
    }
}
