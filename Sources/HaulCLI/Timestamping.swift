import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `-N` / `--timestamping`, as wget: a file already there is fetched again only when the
/// server's `Last-Modified` is newer than its modification time, and a downloaded file takes
/// the server's time.
enum Timestamping {
    /// Seconds since 1970 of an HTTP date in its one current form (IMF-fixdate, RFC 9110:
    /// `Sun, 06 Nov 1994 08:49:37 GMT`), read field by field (no locale-aware formatter).
    static func seconds(ofHTTPDate text: String) -> Int? {
        let fields = text.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard fields.count == 6, fields[5] == "GMT", let day = Int(fields[1]),
              let month = months.firstIndex(of: String(fields[2])), let year = Int(fields[3]) else { return nil }
        let time = fields[4].split(separator: ":").compactMap { Int($0) }
        guard time.count == 3 else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(time[0])
        parts.tm_min = Int32(time[1])
        parts.tm_sec = Int32(time[2])
        return timegm(&parts)
    }

    /// The modification time of the regular file at `path` (never through a link), or `nil`.
    static func modificationTime(of path: String) -> Int? {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        return info.st_mtim.tv_sec
    }
}
