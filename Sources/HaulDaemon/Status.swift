/// aria2's status shapes: every number a string, GIDs as 16 hex digits, files and URIs.
enum Status {
    static func object(_ entry: QueueEntry, in downloads: DownloadQueue, keys: [String]?) -> [String: Any] {
        var object: [String: Any] = [
            "gid": entry.gid, "status": entry.status.rawValue,
            "totalLength": "\(entry.totalLength)", "completedLength": "\(entry.completedLength)",
            "uploadLength": "0", "downloadSpeed": "\(downloads.speed(of: entry.gid))", "uploadSpeed": "0",
            "connections": "\(downloads.connections(of: entry.gid))", "dir": downloads.root.path,
            "files": files(entry, in: downloads),
        ]
        if entry.status.isStopped {
            object["errorCode"] = entry.errorCode ?? "0"
            object["errorMessage"] = entry.errorMessage ?? ""
        }
        // Haul's extras.
        if let sha256 = entry.sha256 { object["sha256"] = sha256 }
        if entry.status == .complete { object["seamsChecked"] = "\(entry.seamsChecked)" }
        guard let keys, !keys.isEmpty else { return object }
        return object.filter { keys.contains($0.key) }
    }

    static func files(_ entry: QueueEntry, in downloads: DownloadQueue) -> [[String: Any]] {
        [["index": "1", "path": downloads.path(of: entry), "length": "\(entry.totalLength)",
          "completedLength": "\(entry.completedLength)", "selected": "true", "uris": uris(entry)]]
    }

    static func uris(_ entry: QueueEntry) -> [[String: String]] {
        entry.uris.enumerated().map { ["uri": $0.element, "status": $0.offset == 0 && entry.status == .active ? "used" : "waiting"] }
    }

    /// aria2's window over a list: `offset` from the start, or from the end when negative (then
    /// in reverse order), `num` items at most.
    static func window(count: Int, offset: Int, num: Int) -> [Int] {
        guard num > 0, count > 0 else { return [] }
        if offset >= 0 {
            guard offset < count else { return [] }
            return Array(offset..<min(count, offset + num))
        }
        let start = count + offset
        guard start >= 0 else { return [] }
        return Array(stride(from: start, through: max(0, start - num + 1), by: -1))
    }
}
