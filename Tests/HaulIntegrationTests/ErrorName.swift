import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul

/// The names a scenario may use for an error: a `HaulError`'s case name, or `URLError.<code>`
/// and the bare code name.
enum ErrorName {
    static func names(of error: any Error) -> [String] {
        if let error = error as? HaulError {
            let name = caseName(error)
            return [name, "HaulError.\(name)"]
        }
        if let error = error as? URLError {
            let code = urlCodes[error.code.rawValue] ?? "\(error.code.rawValue)"
            return ["URLError.\(code)", code]
        }
        return ["\(type(of: error))"]
    }

    /// The case name: the payload's label for cases with one, else by comparison.
    private static func caseName(_ error: HaulError) -> String {
        if let label = Mirror(reflecting: error).children.first?.label { return label }
        switch error {
        case .sessionInvalidated: return "sessionInvalidated"
        case .cancelled: return "cancelled"
        default: return "\(error)"
        }
    }

    private static let urlCodes: [Int: String] = [
        URLError.Code.unknown.rawValue: "unknown",
        URLError.Code.cancelled.rawValue: "cancelled",
        URLError.Code.badURL.rawValue: "badURL",
        URLError.Code.timedOut.rawValue: "timedOut",
        URLError.Code.unsupportedURL.rawValue: "unsupportedURL",
        URLError.Code.cannotFindHost.rawValue: "cannotFindHost",
        URLError.Code.cannotConnectToHost.rawValue: "cannotConnectToHost",
        URLError.Code.networkConnectionLost.rawValue: "networkConnectionLost",
        URLError.Code.httpTooManyRedirects.rawValue: "httpTooManyRedirects",
        URLError.Code.badServerResponse.rawValue: "badServerResponse",
        URLError.Code.userAuthenticationRequired.rawValue: "userAuthenticationRequired",
        URLError.Code.fileDoesNotExist.rawValue: "fileDoesNotExist",
        URLError.Code.noPermissionsToReadFile.rawValue: "noPermissionsToReadFile",
        URLError.Code.secureConnectionFailed.rawValue: "secureConnectionFailed",
    ]
}
