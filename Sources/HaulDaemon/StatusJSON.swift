import Foundation

/// A JSON value already encoded: large results (status lists) are built with `JSONEncoder` from
/// typed values, which is many times faster than `JSONSerialization` over dictionaries, and
/// spliced into the response.
struct EncodedJSON {
    let data: Data
}

/// aria2's status object as a typed value, encoding only the keys asked for.
struct StatusJSON: Encodable {
    struct File: Encodable {
        struct URI: Encodable {
            let uri: String
            let status: String
        }
        let index = "1"
        let path: String
        let length: String
        let completedLength: String
        let selected = "true"
        let uris: [URI]
    }

    let gid: String
    let status: String
    let totalLength: String
    let completedLength: String
    let uploadLength = "0"
    let downloadSpeed: String
    let uploadSpeed = "0"
    let connections: String
    let dir: String
    let files: [File]
    let errorCode: String?
    let errorMessage: String?
    let sha256: String?
    let seamsChecked: String?
    /// The keys to write (all when `nil` or empty).
    let keys: Set<String>?

    private enum Key: String, CodingKey {
        case gid, status, totalLength, completedLength, uploadLength, downloadSpeed, uploadSpeed, connections, dir, files,
             errorCode, errorMessage, sha256, seamsChecked
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        func wanted(_ key: Key) -> Bool { keys.map { $0.isEmpty || $0.contains(key.rawValue) } ?? true }
        func put(_ value: String?, _ key: Key) throws {
            if let value, wanted(key) { try container.encode(value, forKey: key) }
        }
        try put(gid, .gid)
        try put(status, .status)
        try put(totalLength, .totalLength)
        try put(completedLength, .completedLength)
        try put(uploadLength, .uploadLength)
        try put(downloadSpeed, .downloadSpeed)
        try put(uploadSpeed, .uploadSpeed)
        try put(connections, .connections)
        try put(dir, .dir)
        if wanted(.files) { try container.encode(files, forKey: .files) }
        try put(errorCode, .errorCode)
        try put(errorMessage, .errorMessage)
        try put(sha256, .sha256)
        try put(seamsChecked, .seamsChecked)
    }
}
