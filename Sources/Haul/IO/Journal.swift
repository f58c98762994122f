import Foundation

/// The resume blob kept beside a partial file, replaced atomically through the download's
/// `PlacementRoot`: a reader sees the old blob or the new one, never half of one. It is a hint
/// about what is on disk, never an authority over paths: the partial file's name comes from
/// the destination's, and its identity and content are checked before any byte of it is trusted.
struct Journal: Sendable {
    let root: PlacementRoot
    let name: String

    /// Replaces the journal with `data` (mode 0600). When `durable`, the data and the rename
    /// reach the disk before this returns.
    func write(_ data: Data, durable: Bool) throws(HaulError) {
        try root.writeAtomically(name, data: data, durable: durable)
    }

    /// The journal's bytes, or `nil` when there is none (or something other than a regular
    /// file of ours is there).
    func read() -> Data? {
        root.read(name)
    }

    func remove() {
        root.remove(name)
        root.remove(name + ".new")
    }
}
