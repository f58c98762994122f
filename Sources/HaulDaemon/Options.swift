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

    /// `max-download-limit`: bytes per second, with aria2's `K` and `M` suffixes (0: none).
    static func speed(_ options: [String: Any]) throws(RPCError) -> Int64? {
        try size(options, "max-download-limit")
    }

    /// `max-overall-download-limit` (a global option).
    static func overall(_ options: [String: Any]) throws(RPCError) -> Int64? {
        try size(options, "max-overall-download-limit")
    }

    /// `min-split-size`: at least 1 KiB (aria2 takes 1M to 1024M).
    static func minimumSplit(_ options: [String: Any]) throws(RPCError) -> Int64? {
        guard let value = try size(options, "min-split-size") else { return nil }
        guard value >= 1024 else { throw .invalidParams("min-split-size must be at least 1K") }
        return value
    }

    /// `allow-overwrite=true`: a regular file already at `out` may be replaced.
    static func allowOverwrite(_ options: [String: Any]) throws(RPCError) -> Bool {
        guard let value = options["allow-overwrite"] else { return false }
        switch "\(value)" {
        case "true": return true
        case "false": return false
        default: throw .invalidParams("allow-overwrite must be true or false")
        }
    }

    private static func size(_ options: [String: Any], _ key: String) throws(RPCError) -> Int64? {
        guard let value = options[key] else { return nil }
        let text = "\(value)".trimmingCharacters(in: .whitespaces).uppercased()
        var multiplier: Int64 = 1
        var digits = Substring(text)
        if text.hasSuffix("K") { multiplier = 1 << 10; digits = digits.dropLast() }
        if text.hasSuffix("M") { multiplier = 1 << 20; digits = digits.dropLast() }
        guard let number = Int64(digits), number >= 0, number < Int64.max / multiplier else {
            throw .invalidParams("\(key) must be a size in bytes, e.g. 500K or 2M")
        }
        return number * multiplier
    }

    /// Options a queued download cannot take.
    static func refuseUnsupported(_ options: [String: Any]) throws(RPCError) {
        if options["max-overall-download-limit"] != nil {
            throw .invalidParams("max-overall-download-limit is a global option: set it with changeGlobalOption")
        }
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
        if let limit = entry.maxDownloadLimit { options["max-download-limit"] = "\(limit)" }
        if let split = entry.minSplit { options["min-split-size"] = "\(split)" }
        options["allow-overwrite"] = entry.allowOverwrite ? "true" : "false"
        return options
    }
}
