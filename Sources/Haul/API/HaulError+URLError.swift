import CCurl
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension HaulError: LocalizedError {
    /// The same text as `description`, so `localizedDescription` reads well.
    public var errorDescription: String? { description }
}

extension HaulError {
    /// The `userInfo` key under which a `URLError` made by Haul carries the HTTP status code
    /// (the response itself is on the task: `DownloadTask.response`).
    public static let httpStatusCodeKey = "HaulHTTPStatusCode"

    /// The error the public API reports: `URLError` where Foundation has a code (HTTP statuses
    /// by URLSession's download-task error table, transport failures by curl code), else this
    /// `HaulError`. A `URLError`'s `userInfo` carries, as Foundation's do, the failing URL
    /// (`NSURLErrorFailingURLErrorKey`, and its string under `"NSErrorFailingURLStringKey"`), the resume data
    /// (`NSURLSessionDownloadTaskResumeData`) and this `HaulError` as `NSUnderlyingErrorKey`.
    ///
    /// | status | error |
    /// |---|---|
    /// | 401, 407 | `URLError.userAuthenticationRequired` |
    /// | 403 | `URLError.noPermissionsToReadFile` |
    /// | any other non-2xx | `URLError.fileDoesNotExist` |
    func publicError(url: URL?, resumeData: Data? = nil) -> any Error {
        var info: [String: Any] = [NSLocalizedDescriptionKey: description]
        if let resumeData { info[URLSessionDownloadTaskResumeData] = resumeData }
        if let url {
            info[NSURLErrorFailingURLErrorKey] = url
            info["NSErrorFailingURLStringKey"] = url.absoluteString
        }
        info[NSUnderlyingErrorKey] = self as NSError
        let code: URLError.Code
        switch self {
        case .httpStatus(let status):
            info[Self.httpStatusCodeKey] = status
            switch status {
            case 401, 407: code = .userAuthenticationRequired
            case 403: code = .noPermissionsToReadFile
            default: code = .fileDoesNotExist
            }
        case .transport(let curlCode, _):
            code = Self.urlErrorCode(curl: CURLcode(UInt32(curlCode)))
        case .connectionClosedEarly:
            code = .networkConnectionLost
        case .cancelled:
            code = .cancelled
        case .invalidURL:
            code = .unsupportedURL
        case .diskFull(let path, _):
            return HaulError.diskFull(path: path, resumeData: resumeData)
        case .invalidContentRange, .rangeIgnored, .remoteFileChanged, .inconsistentContent, .fileSystem, .fileInUse,
             .notARegularFile, .destinationExists, .invalidFileName, .insufficientSpace,
             .unsupportedRequest, .resumeDataInvalid, .checksumMismatch, .invalidChecksum, .sessionInvalidated, .badPiece:
            return self
        }
        return URLError(code, userInfo: info)
    }

    /// The resume data a failed download's error carries: a `URLError`'s
    /// `NSURLSessionDownloadTaskResumeData`, or a `HaulError.diskFull`'s. `nil` when the
    /// download cannot be continued.
    public static func resumeData(from error: any Error) -> Data? {
        if let error = error as? URLError { return error.userInfo[URLSessionDownloadTaskResumeData] as? Data }
        if case .diskFull(_, let data)? = error as? HaulError { return data }
        return nil
    }

    /// The `URLError` code for a curl transport failure.
    static func urlErrorCode(curl code: CURLcode) -> URLError.Code {
        switch code {
        case CURLE_OPERATION_TIMEDOUT: return .timedOut
        case CURLE_COULDNT_CONNECT: return .cannotConnectToHost
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: return .cannotFindHost
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING, CURLE_HTTP2,
             CURLE_HTTP2_STREAM:
            return .networkConnectionLost
        case CURLE_SSL_CONNECT_ERROR, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_CIPHER, CURLE_USE_SSL_FAILED:
            return .secureConnectionFailed
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH:
            return .serverCertificateUntrusted
        case CURLE_SSL_CERTPROBLEM: return .clientCertificateRejected
        case CURLE_TOO_MANY_REDIRECTS: return .httpTooManyRedirects
        case CURLE_UNSUPPORTED_PROTOCOL: return .unsupportedURL
        case CURLE_URL_MALFORMAT: return .badURL
        case CURLE_WEIRD_SERVER_REPLY: return .badServerResponse
        case CURLE_ABORTED_BY_CALLBACK: return .cancelled
        default: return .unknown
        }
    }
}

#if canImport(FoundationNetworking)
/// Apple's spelling of the resume-data key, so code written for URLSession compiles unchanged
/// (on Linux, Foundation only has `URLSessionDownloadTaskResumeData`).
public let NSURLSessionDownloadTaskResumeData: String = URLSessionDownloadTaskResumeData

extension URLError {
    /// The resume data of a failed download, as on Apple's platforms: `nil` when it cannot be
    /// continued.
    public var downloadTaskResumeData: Data? { userInfo[URLSessionDownloadTaskResumeData] as? Data }
}
#endif
