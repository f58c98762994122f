import COpenSSL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where Haul keeps what outlives a download: the journal key, and the daemon's queue and
/// secret. `$XDG_STATE_HOME/haul`, else `~/.local/state/haul`; each missing level is made
/// private to this user (0700).
package enum StateDirectory {
    /// The default path, or `nil` when neither variable gives an absolute path.
    package static var defaultPath: String? {
        let environment = ProcessInfo.processInfo.environment
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/haul" }
        if let home = environment["HOME"], home.hasPrefix("/") { return home + "/.local/state/haul" }
        return nil
    }

    /// The directory at `path` (default: `defaultPath`), made if missing, held open.
    package static func open(_ path: String? = nil) -> PlacementRoot? {
        guard let directory = path ?? defaultPath, directory.hasPrefix("/") else { return nil }
        var prefix = ""
        for part in directory.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0, errno != EEXIST { return nil }
        }
        return try? PlacementRoot(directory: directory)
    }

    /// The 32 random bytes kept at `name` in `root` (0600), made on first use and never
    /// replaced: written under a side name, then linked into place without replacing, so two
    /// processes starting at once agree on whichever landed first. `nil` when it cannot be
    /// read or made.
    package static func secret(_ name: String, in root: PlacementRoot) -> [UInt8]? {
        if let key = root.read(name), key.count == 32 { return Array(key) }
        var fresh = [UInt8](repeating: 0, count: 32)
        guard RAND_bytes(&fresh, 32) == 1 else { return nil }
        let side = "\(name).\(getpid()).new"
        guard (try? root.writeAtomically(side, data: Data(fresh), durable: true)) != nil else { return nil }
        defer { root.remove(side) }
        if (try? root.publish(side, to: name, replacing: false)) == nil {
            guard let key = root.read(name), key.count == 32 else { return nil }
            return Array(key)
        }
        root.sync()
        return fresh
    }
}
