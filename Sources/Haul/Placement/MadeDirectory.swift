#if canImport(Glibc)
import Glibc
#endif

/// A directory a download made (a metalink name's `a/b/` part), named in its parent, so that
/// the download can remove it again if it fails.
package struct MadeDirectory: Sendable {
    /// The directory it was made in, held open.
    let parent: PlacementRoot
    /// Its single-component name there.
    let name: String

    /// Removes `directories` (as `subdirectory(_:creating:made:)` listed them, outermost
    /// first) innermost first, each only if it is still an empty directory: `rmdir` never
    /// removes anything else, and a symbolic link now at the name is left alone, never followed.
    /// A directory that holds anything (a kept partial file, another download's file) stays, and
    /// so do the ones around it.
    package static func removeIfEmpty(_ directories: [MadeDirectory]) {
        for directory in directories.reversed() {
            guard directory.parent.removeDirectoryIfEmpty(directory.name) else { return }
        }
    }
}

extension PlacementRoot {
    /// Removes the directory `name` if it is empty (never a link or a file). Returns whether it
    /// is gone.
    func removeDirectoryIfEmpty(_ name: String) -> Bool {
        guard Self.isValidName(name) else { return false }
        return unlinkat(fd, name, AT_REMOVEDIR) == 0
    }
}
