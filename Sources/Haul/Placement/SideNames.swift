/// The names of a download's partial file and journal beside its destination: hidden, derived
/// from the destination's name alone (never from a journal or a server), and short enough for
/// `NAME_MAX` even with a side suffix, so any name the file system takes works.
enum SideNames {
    /// `.NAME.haul-part`
    static func partial(for name: String) -> String { side(of: name, suffix: ".haul-part") }

    /// `.NAME.haul-journal`
    static func journal(for name: String) -> String { side(of: name, suffix: ".haul-journal") }

    /// Whether `name` has the form of a partial file's or a journal's name (or of a journal's
    /// side name while it is replaced, or of a file being linked into place): a download must
    /// not be given such a name, or it and another download's partial file would be one file.
    static func isSideName(_ name: String) -> Bool {
        guard name.hasPrefix(".") else { return false }
        return name.hasSuffix(".haul-part") || name.hasSuffix(".haul-journal") || name.contains(".haul-journal.")
            || name.hasSuffix(".haul-new")
    }

    /// Room kept for `.new`, the journal's side name while it is replaced.
    private static let reserve = 4

    private static func side(of name: String, suffix: String) -> String {
        let limit = 255 - reserve - 1 - suffix.utf8.count
        guard name.utf8.count > limit else { return "." + name + suffix }
        // Shorten at a character boundary and tell names apart by a digest of the whole.
        var hash = SHA256()
        hash.update(Array(name.utf8))
        let tag = "~" + hash.finalizeHex().prefix(12)
        var kept = ""
        for character in name where kept.utf8.count + character.utf8.count + tag.utf8.count <= limit {
            kept.append(character)
        }
        return "." + kept + tag + suffix
    }
}
