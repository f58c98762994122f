import Foundation

/// The resume blob kept beside a partial file, replaced atomically through the download's
/// `PlacementRoot`: a reader sees the old blob or the new one, never half of one. It is a hint
/// about what is on disk, never an authority over paths: the partial file's name comes from
/// the destination's, and its identity and content are checked before any byte of it is trusted.
struct Journal: Sendable {
    let root: PlacementRoot
    let name: String

    /// Replaces the journal with `data` (mode 0600), signed with this user's `JournalKey` on a
    /// last line. When `durable`, the data and the rename reach the disk before this returns.
    func write(_ data: Data, durable: Bool) throws(HaulError) {
        var signed = data
        if let key = JournalKey.current {
            signed.append(contentsOf: Array((JournalKey.signature(of: data, key: key) + "\n").utf8))
        }
        try root.writeAtomically(name, data: signed, durable: durable)
    }

    /// The resume data in the journal, or `nil` when there is none, something other than a
    /// regular file of ours is there, or its signature is not this user's (someone else wrote
    /// or edited it: it costs a restart, never a byte).
    func read() -> Data? {
        guard let bytes = root.read(name) else { return nil }
        guard let key = JournalKey.current else { return bytes }
        guard bytes.last == 0x0A, let cut = bytes.dropLast().lastIndex(of: 0x0A) else { return nil }
        let data = bytes[..<(cut + 1)]
        let line = String(decoding: bytes[(cut + 1)...].dropLast(), as: UTF8.self)
        guard line == JournalKey.signature(of: Data(data), key: key) else { return nil }
        return Data(data)
    }

    func remove() {
        root.remove(name)
        root.remove(name + ".new")
    }
}
