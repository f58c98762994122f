import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul

/// `haul`'s exit codes, documented in `haul get --help` and the README.
enum ExitStatus: Int32, Error {
    case success = 0
    /// The network or the server failed (connection, timeout, a server that lies).
    case networkError = 1
    /// The server answered with an HTTP error status.
    case httpError = 2
    /// The file's SHA-256 is not the one expected.
    case checksumMismatch = 3
    /// The disk is full or a file could not be written.
    case diskError = 4
    /// Usage error (bad arguments).
    case usage = 64
    /// Interrupted (Ctrl-C, SIGTERM): the journal was written; run the same command to resume.
    case interrupted = 130

    static let helpText = """
    Exit codes: 0 success, 1 network or server error, 2 HTTP error status, 3 checksum mismatch, \
    4 disk or file error, 64 usage error, 130 interrupted (resumable: run the same command again). \
    With several downloads, a table of results ends the run and the exit code is that of the \
    first download in the list that failed (0 only when all succeeded).
    """

    /// The exit status for a download error.
    init(for error: any Error) {
        if let error = error as? URLError {
            switch error.code {
            case .fileDoesNotExist, .userAuthenticationRequired, .noPermissionsToReadFile: self = .httpError
            case .cancelled: self = .interrupted
            default: self = .networkError
            }
            return
        }
        switch error as? HaulError {
        case .diskFull?, .fileSystem?, .fileInUse?, .notARegularFile?, .destinationExists?, .insufficientSpace?:
            self = .diskError
        case .invalidFileName?: self = .usage
        case .resumeDataInvalid?: self = .diskError
        case .checksumMismatch?, .badPiece?: self = .checksumMismatch
        case .invalidChecksum?: self = .usage
        case .httpStatus?: self = .httpError
        case .cancelled?: self = .interrupted
        default: self = .networkError
        }
    }

    var code: ExitCode { ExitCode(rawValue) }
}
