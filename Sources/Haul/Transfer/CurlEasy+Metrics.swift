import CCurl
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension CurlEasy {
    /// How long the response took to start after the request was sent (the round trip and the
    /// server's time, without connecting), once its first byte is in.
    var responseWait: Duration? {
        var pretransfer: curl_off_t = 0
        var firstByte: curl_off_t = 0
        guard ccurl_easy_getinfo_off_t(handle, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) == CURLE_OK,
              ccurl_easy_getinfo_off_t(handle, CURLINFO_STARTTRANSFER_TIME_T, &firstByte) == CURLE_OK,
              pretransfer > 0, firstByte >= pretransfer else { return nil }
        return .microseconds(firstByte - pretransfer)
    }

    /// The finished request's timings and sizes, as libcurl measured them (relative to
    /// `started`, when the request was handed to curl).
    func transactionMetrics(started: Date, request: URLRequest, head: ResponseHead?, viaProxy: Bool) -> DownloadTaskTransactionMetrics {
        func seconds(_ info: CURLINFO) -> Double? {
            var micros: curl_off_t = 0
            guard ccurl_easy_getinfo_off_t(handle, info, &micros) == CURLE_OK, micros > 0 else { return nil }
            return Double(micros) / 1_000_000
        }
        func long(_ info: CURLINFO) -> Int {
            var value = 0
            return ccurl_easy_getinfo_long(handle, info, &value) == CURLE_OK ? value : 0
        }
        func string(_ info: CURLINFO) -> String? {
            var value: UnsafePointer<CChar>?
            guard ccurl_easy_getinfo_string(handle, info, &value) == CURLE_OK, let value else { return nil }
            let text = String(cString: value)
            return text.isEmpty ? nil : text
        }
        let date = { (offset: Double?) in offset.map { started.addingTimeInterval($0) } }
        let reused = long(CURLINFO_NUM_CONNECTS) == 0
        let lookup = reused ? nil : seconds(CURLINFO_NAMELOOKUP_TIME_T)
        let connect = reused ? nil : seconds(CURLINFO_CONNECT_TIME_T)
        let tls = reused ? nil : seconds(CURLINFO_APPCONNECT_TIME_T)
        let pretransfer = seconds(CURLINFO_PRETRANSFER_TIME_T)
        let firstByte = seconds(CURLINFO_STARTTRANSFER_TIME_T)
        let total = seconds(CURLINFO_TOTAL_TIME_T)
        var body: curl_off_t = 0
        _ = ccurl_easy_getinfo_off_t(handle, CURLINFO_SIZE_DOWNLOAD_T, &body)
        let version: String? = switch long(CURLINFO_HTTP_VERSION) {
        case Int(CURL_HTTP_VERSION_1_0): "http/1.0"
        case Int(CURL_HTTP_VERSION_1_1): "http/1.1"
        case Int(CURL_HTTP_VERSION_2_0): "h2"
        default: nil
        }
        let url = effectiveURL.flatMap(URL.init(string:)) ?? request.url ?? URL(fileURLWithPath: "/")
        var sent = request
        sent.url = url
        let port = long(CURLINFO_PRIMARY_PORT)
        let localPort = long(CURLINFO_LOCAL_PORT)
        return DownloadTaskTransactionMetrics(
            request: sent, answer: head.map { TransactionResponse(url: url, head: $0) }, fetchStartDate: started,
            domainLookupStartDate: lookup == nil ? nil : started, domainLookupEndDate: date(lookup),
            connectStartDate: date(lookup ?? (reused ? nil : 0)), secureConnectionStartDate: tls == nil ? nil : date(connect),
            secureConnectionEndDate: date(tls), connectEndDate: date(tls ?? connect),
            requestStartDate: date(pretransfer), requestEndDate: date(pretransfer),
            responseStartDate: date(firstByte), responseEndDate: date(total),
            networkProtocolName: head == nil ? nil : version, isReusedConnection: reused,
            isProxyConnection: viaProxy,
            countOfResponseBodyBytesReceived: Int64(body), countOfResponseHeaderBytesReceived: Int64(long(CURLINFO_HEADER_SIZE)),
            countOfRequestHeaderBytesSent: Int64(long(CURLINFO_REQUEST_SIZE)),
            remoteAddress: string(CURLINFO_PRIMARY_IP), remotePort: port > 0 ? port : nil,
            localAddress: string(CURLINFO_LOCAL_IP), localPort: localPort > 0 ? localPort : nil)
    }
}
