/// A failure Haul reports, each with a message a person can act on.
///
/// HTTP statuses and transport failures that Foundation has `URLError` codes for are reported as
/// `URLError` by the session API; these cases cover what the engine itself detects.
public enum HaulError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The server answered with a non-success HTTP status.
    case httpStatus(Int)
    /// libcurl reported a transport failure (`code` is the `CURLcode`).
    case transport(code: Int, message: String)
    /// A `206` whose `Content-Range` does not match the range asked for or the file's length.
    case invalidContentRange(expected: String, received: String)
    /// The server sent the whole file (`200`) to a request for a byte range.
    case rangeIgnored(range: String)
    /// The file on the server is not the one the download started with.
    case remoteFileChanged(reason: String)
    /// Two responses carried different bytes for the same range (compared where their requests
    /// overlap): the server is not serving one consistent file, even as one stream from byte 0.
    case inconsistentContent(offset: Int64)
    /// A response ended before the bytes its headers promised.
    case connectionClosedEarly(expected: Int64, received: Int64)
    /// The disk (or quota) is full; what was written is kept, and `resumeData` continues it.
    case diskFull(path: String, resumeData: Data? = nil)
    /// Another download (in this process or another) is writing the same partial file.
    case fileInUse(path: String)
    /// Something other than a regular file is where Haul would write or replace one (a
    /// directory, a symbolic link, a device); it is left alone.
    case notARegularFile(path: String)
    /// The destination exists and the download was not allowed to replace it.
    case destinationExists(path: String)
    /// A file name that would leave its directory or that the file system cannot hold.
    case invalidFileName(String)
    /// The file does not fit: the server claims `needed` bytes and only `available` are free.
    case insufficientSpace(path: String, needed: Int64, available: Int64)
    /// A file-system call failed.
    case fileSystem(operation: String, path: String, errno: Int32)
    /// The URL cannot be downloaded (unsupported scheme or malformed).
    case invalidURL(String)
    /// The request asks for something a download cannot do (a method other than GET).
    case unsupportedRequest(reason: String)
    /// Resume data could not be used: truncated, corrupt, from another version, or its temp file
    /// is gone or changed.
    case resumeDataInvalid(reason: String)
    /// The downloaded bytes do not have the expected SHA-256 (both lowercase hex). The file was
    /// not moved into place.
    case checksumMismatch(expected: String, actual: String)
    /// An expected checksum could not be read (not 64 hex digits, `sha-256=HEX` or `sha256-BASE64`).
    case invalidChecksum(String)
    /// A piece of a metalink download kept failing its hash (or could not be fetched again on
    /// its own); nothing was kept.
    case badPiece(index: Int, offset: Int64, reason: String)
    /// The session was invalidated before this task started.
    case sessionInvalidated
    /// The download was cancelled.
    case cancelled

    /// What went wrong and what to do about it, in one sentence.
    public var description: String {
        switch self {
        case .httpStatus(let code):
            return "the server answered HTTP \(code); check the URL and your access to it"
        case .transport(let code, let message):
            return "transfer failed: \(message) (curl error \(code)); " + Self.advice(forCurlCode: code)
        case .invalidContentRange(let expected, let received):
            return "the server sent the wrong byte range (asked for \(expected), got \(received)) again and again; "
                + "with restarts allowed it is fetched as one stream instead"
        case .rangeIgnored(let range):
            return "the server ignored the request for bytes \(range) and sent the whole file; "
                + "it may have changed on the server, start the download again"
        case .remoteFileChanged(let reason):
            return "the file changed on the server (\(reason)); start the download again"
        case .inconsistentContent(let offset):
            return "the server sent different bytes for the same range (first at byte \(offset)): it is not "
                + "serving one consistent file, so nothing was saved; try again later or use another source"
        case .connectionClosedEarly(let expected, let received):
            return "the connection closed after \(received) of \(expected) bytes; try again"
        case .diskFull(let path, _):
            return "no space left on the device writing \(path); free some space and resume"
        case .notARegularFile(let path):
            return "\(path) is not a regular file (a directory, link or device); it was left alone, choose another name"
        case .destinationExists(let path):
            return "\(path) exists and was not replaced; choose another name or allow replacing it"
        case .invalidFileName(let name):
            return "'\(name)' cannot be used as a file name here (it is empty, leaves the directory or is too long)"
        case .insufficientSpace(let path, let needed, let available):
            return "\(path) does not fit: the server claims \(needed) bytes and \(available) are free there; "
                + "free some space or download elsewhere"
        case .fileInUse(let path):
            return "another download is writing \(path); wait for it to finish or choose another output"
        case .fileSystem(let operation, let path, let errno):
            return "\(operation) failed for \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        case .invalidURL(let url):
            return "cannot download \(url): only http and https URLs are supported"
        case .unsupportedRequest(let reason):
            return "cannot download this request: \(reason)"
        case .resumeDataInvalid(let reason):
            return "the resume data cannot be used (\(reason)); start the download again"
        case .checksumMismatch(let expected, let actual):
            return "\(expected.count == 128 ? "SHA-512" : "SHA-256") mismatch: expected \(expected), got \(actual); the file was not kept — download it again"
        case .invalidChecksum(let text):
            return "'\(text)' is not a SHA-256 (64 hex digits, sha-256=HEX or sha256-BASE64)"
        case .badPiece(let index, let offset, let reason):
            return "piece \(index) (from byte \(offset)) does not have the metalink's hash: \(reason); "
                + "nothing was kept — the mirrors do not serve the file the metalink describes"
        case .sessionInvalidated:
            return "the session was invalidated; make a new DownloadSession for new downloads"
        case .cancelled:
            return "the download was cancelled"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import struct Foundation.Data

extension HaulError {
    /// What to do about a transport failure, by its cause.
    static func advice(forCurlCode code: Int) -> String {
        switch code {
        case 35, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91:
            // TLS: handshake, certificate, CA file or pinning problems.
            return "the TLS connection could not be trusted; if the server uses a private CA, trust it "
                + "(caCertificateFile, haul --cacert FILE), or for testing only skip verification (--insecure)"
        case 6:
            return "the host name could not be resolved; check the URL's host"
        case 7:
            return "the server refused the connection or is not reachable; check the host and port"
        case 28:
            return "the server stopped sending or was too slow; try again, or raise the time limits"
        case 8:
            return "the server's answers are malformed; try again later or use another source"
        case 47:
            return "too many redirects; the URL may redirect in a loop"
        default:
            return "check the network and try again"
        }
    }
}
