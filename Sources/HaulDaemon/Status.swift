import Foundation

/// aria2's status shapes: every number a string, GIDs as 16 hex digits, files and URIs.
enum Status {
    static func object(_ entry: QueueEntry, in downloads: DownloadQueue, keys: [String]?) -> [String: Any] {
        let value = typed(entry, in: downloads, keys: keys)
        let data = (try? JSONEncoder().encode(value)) ?? Data()
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }

    /// Many status objects encoded at once (tellActive, tellWaiting, tellStopped), as one JSON
    /// array; one that would pass `RPCService.maximumAnswerBytes` is refused (a thousand
    /// downloads with 64 long URIs each would answer half a gigabyte).
    static func list(_ entries: [QueueEntry], in downloads: DownloadQueue, keys: [String]?) throws(RPCError) -> EncodedJSON {
        let encoder = JSONEncoder()
        var data = Data("[".utf8)
        for (index, entry) in entries.enumerated() {
            if index > 0 { data.append(UInt8(ascii: ",")) }
            data.append((try? encoder.encode(typed(entry, in: downloads, keys: keys))) ?? Data("{}".utf8))
            guard data.count <= RPCService.maximumAnswerBytes else { throw .invalidParams(RPCService.answerTooLarge) }
        }
        data.append(UInt8(ascii: "]"))
        return EncodedJSON(data: data)
    }

    static func typed(_ entry: QueueEntry, in downloads: DownloadQueue, keys: [String]?) -> StatusJSON {
        let stopped = entry.status.isStopped
        return StatusJSON(
            gid: entry.gid, status: entry.status.rawValue, totalLength: "\(entry.totalLength)",
            completedLength: "\(entry.completedLength)", downloadSpeed: "\(downloads.speed(of: entry.gid))",
            connections: "\(downloads.connections(of: entry.gid))", dir: downloads.root.path,
            files: [StatusJSON.File(path: downloads.path(of: entry), length: "\(entry.totalLength)",
                                    completedLength: "\(entry.completedLength)",
                                    uris: uris(entry).map { StatusJSON.File.URI(uri: $0["uri"] ?? "", status: $0["status"] ?? "") })],
            errorCode: stopped ? (entry.errorCode ?? "0") : nil, errorMessage: stopped ? (entry.errorMessage ?? "") : nil,
            sha256: entry.sha256, seamsChecked: entry.status == .complete ? "\(entry.seamsChecked)" : nil,
            keys: keys.map(Set.init))
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
        let num = min(num, count)
        if offset >= 0 {
            guard offset < count else { return [] }
            return Array(offset..<min(count, offset + num))
        }
        guard offset >= -count else { return [] }
        let start = count + offset
        return Array(stride(from: start, through: max(0, start - num + 1), by: -1))
    }
}
