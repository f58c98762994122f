/// The rule for a metalink's file names (RFC 5854 §4.1.2.1 and more): a relative path of
/// ordinary, visible components that can never leave the output directory.
enum MetalinkName {
    /// Directory levels a name may have.
    static let maximumDepth = 32

    /// Throws `MetalinkError.unsafeName` saying why `name` is refused.
    static func check(_ name: String) throws(MetalinkError) {
        func unsafe(_ reason: String) -> MetalinkError { .unsafeName(name, reason: reason) }
        guard !name.isEmpty else { throw unsafe("it is empty") }
        guard !name.hasPrefix("/") else { throw unsafe("it is an absolute path") }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw unsafe("it contains a control character")
        }
        guard !name.contains("\\") else { throw unsafe("it contains a backslash") }
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        guard components.count <= maximumDepth else { throw unsafe("it is more than \(maximumDepth) levels deep") }
        if let leaf = components.last, SideNames.isSideName(String(leaf)) {
            // `.NAME.haul-part` is where the file NAME is written while it downloads.
            throw unsafe("it has the form of a partial file's or journal's name, which another file's download uses")
        }
        for component in components {
            guard !component.isEmpty else { throw unsafe("it has an empty path component") }
            guard component != "." else { throw unsafe("it has a '.' component") }
            guard component != ".." else { throw unsafe("it has a '..' component, which would leave the directory") }
            // A metalink's names are often a server's: none makes a hidden file or directory
            // (.ssh/authorized_keys, .bashrc), as no server's Content-Disposition name does.
            guard !component.hasPrefix(".") else {
                throw unsafe("a component starts with '.', which would make a hidden file or directory (such as .ssh or .bashrc)")
            }
            guard PlacementRoot.isValidName(String(component)) else { throw unsafe("a component is too long") }
        }
    }

    /// The components of a name that passed `check`.
    static func components(of name: String) -> [String] {
        name.split(separator: "/").map(String.init)
    }
}
