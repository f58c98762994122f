import Foundation
import Haul

/// The daemon's state on disk: `queue.json` in the state directory, replaced atomically and
/// synced (file, then directory) before any change is acknowledged, so `kill -9` or a power cut
/// loses nothing that was answered.
struct StateStore: Sendable {
    let root: PlacementRoot
    static let fileName = "queue.json"

    func load() throws -> DaemonState {
        guard let data = root.read(Self.fileName, limit: 256 << 20) else {
            // Missing is an empty queue; present but unreadable must never be taken for one
            // (the next save would overwrite every download).
            if (try? root.status(of: Self.fileName)) ?? nil == nil { return DaemonState() }
            throw DaemonError.corruptState("\(root.location(of: Self.fileName)) cannot be read (not a regular file of "
                + "this user, or over 256 MiB); move it away to start empty")
        }
        let state: DaemonState
        do {
            state = try JSONDecoder().decode(DaemonState.self, from: data)
        } catch {
            throw DaemonError.corruptState("\(root.location(of: Self.fileName)) cannot be read (\(error)); move it away to start empty")
        }
        // A newer daemon's file may mean what this one cannot read; saving over it would lose that.
        guard state.version == DaemonState.currentVersion else {
            throw DaemonError.corruptState("\(root.location(of: Self.fileName)) is of format \(state.version); this haul reads "
                + "format \(DaemonState.currentVersion) — run the haul that wrote it, or move the file away to start empty")
        }
        return state
    }

    func save(_ state: DaemonState) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(state)
        do {
            try root.writeAtomically(Self.fileName, data: data, durable: true)
        } catch {
            throw DaemonError.stateNotSaved("\(error)")
        }
    }
}

extension StateStore {
    /// The metalink of a queued download (`aria2.addMetalink`), kept beside the queue rather
    /// than in it: piece hashes can be large, and the queue is rewritten on every change.
    static func metalinkName(_ gid: String) -> String { "metalink-\(gid).meta4" }

    /// Keeps `data` for `gid`, synced before the queue that names it is saved.
    func saveMetalink(_ data: Data, gid: String) throws {
        do {
            try root.writeAtomically(Self.metalinkName(gid), data: data, durable: true)
        } catch {
            throw DaemonError.stateNotSaved("\(error)")
        }
    }

    /// The metalink kept for `gid`, parsed and checked again; `nil` when it is missing or unusable.
    func loadMetalink(gid: String) -> Metalink? {
        guard let data = root.read(Self.metalinkName(gid), limit: Metalink.maximumDocumentSize) else { return nil }
        return try? Metalink(data: data)
    }

    func removeMetalink(gid: String) {
        root.remove(Self.metalinkName(gid))
    }
}

/// What can stop the daemon itself.
enum DaemonError: Error, CustomStringConvertible {
    case corruptState(String)
    case stateNotSaved(String)
    case noStateDirectory
    case noSecret(String)

    var description: String {
        switch self {
        case .corruptState(let reason): return "the saved queue is damaged: \(reason)"
        case .stateNotSaved(let reason): return "the queue could not be saved: \(reason)"
        case .noStateDirectory:
            return "no state directory: set XDG_STATE_HOME or HOME, or give --state-dir"
        case .noSecret(let path): return "the RPC secret in \(path) cannot be read or made"
        }
    }
}
