import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul

/// aria2's exit/error codes for a failed download, so clients show what they know.
enum ErrorCodes {
    static func aria2(for error: any Error) -> (code: String, message: String) {
        let message = (error as? HaulError)?.description ?? error.localizedDescription
        if let error = error as? URLError {
            switch error.code {
            case .fileDoesNotExist: return ("3", error.localizedDescription)
            case .userAuthenticationRequired, .noPermissionsToReadFile: return ("24", error.localizedDescription)
            case .timedOut: return ("2", error.localizedDescription)
            case .cancelled: return ("31", "cancelled")
            default: return ("6", error.localizedDescription)
            }
        }
        switch error as? HaulError {
        case .checksumMismatch?: return ("32", message)
        case .diskFull?, .insufficientSpace?: return ("9", message)
        case .destinationExists?: return ("13", message)
        case .fileSystem?, .notARegularFile?, .fileInUse?, .invalidFileName?: return ("16", message)
        case .invalidContentRange?, .rangeIgnored?: return ("22", message)
        default: return ("1", message)
        }
    }
}
