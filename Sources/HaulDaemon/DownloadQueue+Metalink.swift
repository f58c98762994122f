import Foundation
import Haul

/// The daemon's metalink downloads (`aria2.addMetalink`): names with directories inside the
/// root, the metalink kept in the state directory, and tasks made from it so that its pieces
/// and hashes (SHA-256 or SHA-512) verify the file as `haul get FILE.meta4` does.
extension DownloadQueue {
    /// Throws unless a file named `name` (a relative path) can be placed in the root: its
    /// directories, where they exist, are directories reached without a link.
    func checkPlacement(_ name: String) throws(RPCError) {
        _ = try directory(of: name)
    }

    /// The directory `name`'s file goes in, held open (never through a link), or `nil` when it
    /// does not exist yet (it is made when the download starts).
    private func directory(of name: String) throws(RPCError) -> PlacementRoot? {
        let folders = Array(name.split(separator: "/").map(String.init).dropLast())
        guard !folders.isEmpty else { return rootDirectory }
        do {
            return try rootDirectory.subdirectory(folders, creating: false)
        } catch .fileSystem(_, _, let code) where code == ENOENT {
            return nil
        } catch {
            throw .invalidParams("'\(folders.joined(separator: "/"))' cannot hold '\(name)' inside the download directory: \(error)")
        }
    }

    /// A name no other download of the queue uses and no file in its directory has (aria2's
    /// auto-file-renaming: `NAME.1.EXT`, …); a name's directories are kept as they are.
    func reserve(_ name: String, avoidingFiles: Bool = true) throws(RPCError) -> String {
        let folder = name.split(separator: "/").dropLast().joined(separator: "/")
        let leaf = String(name.split(separator: "/").last ?? Substring(name))
        guard !DownloadSession.isSideName(leaf) else {
            throw .invalidParams("'\(name)' has the form of a partial file's or journal's name; give the file another name")
        }
        let directory = try directory(of: name)
        let base = folder.isEmpty ? root : root.appendingPathComponent(folder)
        let taken = Set(state.queue.map { root.appendingPathComponent($0.name).path })
        // Room for a `.N` before the extension, within the file system's name limit.
        var short = leaf
        while short.utf8.count > 240 {
            let url = URL(fileURLWithPath: short)
            let stem = url.deletingPathExtension().lastPathComponent
            let suffix = url.pathExtension.isEmpty ? "" : "." + url.pathExtension
            short = String(stem.dropLast()) + suffix
            if stem.isEmpty { short = String(short.dropLast()) }
        }
        let wanted = base.appendingPathComponent(short)
        var candidate = wanted
        var existing = taken
        while true {
            candidate = OutputName.distinct(wanted, taken: existing)
            // A name that cannot even be looked at counts as taken.
            var present = false
            if avoidingFiles, let directory {
                do {
                    present = try directory.status(of: candidate.lastPathComponent) != nil
                } catch {
                    present = true
                }
            }
            if !present { break }
            existing.insert(candidate.path)
        }
        return folder.isEmpty ? candidate.lastPathComponent : folder + "/" + candidate.lastPathComponent
    }

    /// Keeps the one-file `metalink` (under the reserved `name`) in the state directory for
    /// `entry`, synced before the queue naming it is saved.
    func keep(_ metalink: Metalink, named name: String, for entry: inout QueueEntry, location: String?) throws(RPCError) {
        guard var file = metalink.files.first else { throw .invalidParams("the metalink describes no file") }
        file.name = name
        do {
            try store.saveMetalink(try Metalink(files: [file]).xmlData(), gid: entry.gid)
        } catch {
            throw .internalError("\(error)")
        }
        entry.hasMetalink = true
        entry.metalinkLocation = location
    }

    /// The task for a metalink entry: from its journal when one is there, else fresh; `nil`
    /// when its metalink is gone.
    func metalinkTask(for entry: QueueEntry) -> DownloadTask? {
        guard let metalink = store.loadMetalink(gid: entry.gid) else { return nil }
        let task: DownloadTask
        if let journal = DownloadSession.journal(forName: entry.name, in: rootDirectory) {
            task = session.downloadTask(with: metalink, inDirectory: root, preferringLocation: entry.metalinkLocation,
                                        resumeData: journal)
        } else {
            task = session.downloadTask(with: metalink, inDirectory: root, preferringLocation: entry.metalinkLocation)
        }
        return task
    }

    /// A queued download that cannot start at all ends as an error.
    func failedToStart(_ gid: String, reason: String) {
        guard !isRunning(gid), let index = state.queue.firstIndex(where: { $0.gid == gid }) else { return }
        defer { schedule() }
        var updated = state
        var entry = updated.queue.remove(at: index)
        entry.status = .error
        entry.errorCode = "1"
        entry.errorMessage = reason
        updated.stopped.append(entry)
        trimHistory(&updated)
        commitOrKeep(updated)
        onEvent("aria2.onDownloadError", gid)
    }
}
