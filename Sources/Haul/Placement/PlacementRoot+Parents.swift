import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension PlacementRoot {
    /// Opens `directory`, first making it and any missing parents (mode 0777 less the umask, as
    /// `mkdir -p` does).
    ///
    /// A directory that already exists is opened as named, as `init(directory:)` does. When
    /// something is missing, the path is walked one component at a time from `/` (or the
    /// current directory) with `openat(O_NOFOLLOW | O_DIRECTORY)`, each missing component made
    /// with `mkdirat` and entered the same way: nothing is made through a symbolic link, and a
    /// link or a file in the way is refused with an error naming it.
    package static func makingDirectories(_ directory: String) throws(HaulError) -> PlacementRoot {
        do {
            return try PlacementRoot(directory: directory)
        } catch .fileSystem(_, _, let code) where code == ENOENT || code == ENOTDIR {
            // Missing, or something else in the way: walk, make, and name what is in the way.
        }
        let absolute = directory.hasPrefix("/")
        var current = retryingInterrupts { open(absolute ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard current >= 0 else { throw DataFile.error("open the directory", absolute ? "/" : ".", errno) }
        var walked = absolute ? "/" : ""
        for component in directory.split(separator: "/").map(String.init) where component != "." {
            walked += (walked.isEmpty || walked.hasSuffix("/") ? "" : "/") + component
            if component == ".." {
                // The user's own path may climb; only what exists can be climbed.
                let next = retryingInterrupts { openat(current, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
                let code = errno
                _ = Glibc.close(current)
                guard next >= 0 else { throw DataFile.error("open the directory", walked, code) }
                current = next
                continue
            }
            var next = enter(current, component)
            if next < 0, errno == ENOENT {
                if mkdirat(current, component, 0o777) != 0, errno != EEXIST {
                    let code = errno
                    _ = Glibc.close(current)
                    throw .fileSystem(operation: "create the directory", path: walked, errno: code)
                }
                next = enter(current, component)
            }
            let code = errno
            var info = stat()
            let isLink = next < 0 && fstatat(current, component, &info, AT_SYMLINK_NOFOLLOW) == 0
                && info.st_mode & S_IFMT == S_IFLNK
            _ = Glibc.close(current)
            guard next >= 0 else {
                switch code {
                case _ where isLink:
                    throw .fileSystem(operation: "create the directory (haul makes directories only along a path "
                        + "without symbolic links; give the directory the link points to)", path: walked, errno: code)
                case ENOTDIR, ELOOP:
                    throw .fileSystem(operation: "create the directory (a file is in the way)", path: walked, errno: code)
                default:
                    throw DataFile.error("open the directory", walked, code)
                }
            }
            current = next
        }
        return PlacementRoot(descriptor: current, path: directory)
    }

    /// The directory `name` in `parent`, opened without following a symbolic link; -1 and errno on failure.
    private static func enter(_ parent: Int32, _ name: String) -> Int32 {
        retryingInterrupts { openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
    }
}
