import Foundation
import Haul

/// aria2's per-download options that mean something to Haul, read strictly: a `dir` or `out`
/// that would leave the download root is refused, never cleaned up into something else.
enum Options {
    /// The file name from `out` (with `dir`, which may only name the root itself).
    static func name(_ options: [String: Any], root: URL) throws(RPCError) -> String? {
        if let dir = options["dir"] {
            guard let text = dir as? String,
                  URL(fileURLWithPath: text).standardizedFileURL.path == root.standardizedFileURL.path else {
                throw .invalidParams("dir must be the download directory \(root.path); haul writes nowhere else")
            }
        }
        guard let out = options["out"] else { return nil }
        guard let name = out as? String, !name.isEmpty else { throw .invalidParams("out must be a file name") }
        guard PlacementRoot.isValidName(name), OutputName.sanitize(name) == name else {
            throw .invalidParams("out must be a plain file name inside the download directory, not '\(name)'")
        }
        return name
    }

    /// `split` / `max-connection-per-server` (the larger), as connections.
    static func connections(_ options: [String: Any]) throws(RPCError) -> Int? {
        var best: Int?
        for key in ["split", "max-connection-per-server"] {
            guard let value = options[key] else { continue }
            guard let count = Int("\(value)"), (1...64).contains(count) else {
                throw .invalidParams("\(key) must be between 1 and 64")
            }
            best = max(best ?? 0, count)
        }
        return best
    }

    /// `checksum=sha-256=HEX`.
    static func checksum(_ options: [String: Any]) throws(RPCError) -> String? {
        guard let value = options["checksum"] else { return nil }
        guard let text = value as? String, text.lowercased().hasPrefix("sha-256="), text.count == 8 + 64,
              text.dropFirst(8).allSatisfy(\.isHexDigit) else {
            throw .invalidParams("checksum must be sha-256=HEX (64 hex digits)")
        }
        return text.lowercased()
    }

    /// `header`: one string or a list of `Name: value`.
    static func headers(_ options: [String: Any]) throws(RPCError) -> [String] {
        guard let value = options["header"] else { return [] }
        let list = (value as? [String]) ?? (value as? String).map { [$0] }
        guard let list, list.allSatisfy({ $0.contains(":") && !$0.hasPrefix(":") && !$0.contains("\n") }) else {
            throw .invalidParams("header must be 'Name: value' (or a list of them)")
        }
        return list
    }

    /// `pause=true`: added paused, as aria2's option does.
    static func paused(_ options: [String: Any]) throws(RPCError) -> Bool {
        guard let value = options["pause"] else { return false }
        switch "\(value)" {
        case "true": return true
        case "false": return false
        default: throw .invalidParams("pause must be true or false")
        }
    }

    /// The options of `entry` as aria2 reports them.
    static func describe(_ entry: QueueEntry, root: URL) -> [String: Any] {
        var options: [String: Any] = ["dir": root.path, "out": entry.name]
        if let connections = entry.connections { options["split"] = "\(connections)" }
        if let checksum = entry.checksum { options["checksum"] = checksum }
        return options
    }
}
