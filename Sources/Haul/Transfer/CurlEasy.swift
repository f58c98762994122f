import CCurl

/// Settings every request of a download shares.
struct RequestOptions: Sendable {
    var url: String
    var headers: [String] = []
    var userAgent: String = "haul/\(Haul.version)"
    var connectTimeoutMilliseconds: Int = 30_000
    /// A transfer slower than `minimumBytesPerSecond` for this long is a stall
    /// (CURLE_OPERATION_TIMEDOUT): it catches silent connections and trickles alike.
    var stallTimeoutSeconds: Int = 30
    var minimumBytesPerSecond: Int = 1024
    /// Receive buffer per connection: larger means fewer write callbacks.
    var bufferSize: Int = 128 * 1024
    var caFile: String?
    var verifyTLS: Bool = true
    var proxy: String?
    /// Read credentials for the host from a netrc file (`~/.netrc`, or `netrcFile`).
    var usesNetrc = false
    var netrcFile: String?
    /// A cookie file in Netscape format (as curl and wget read it) whose cookies are sent to the
    /// hosts they name.
    var cookieFile: String?
    /// The HTTP method; anything but GET is sent as one stream without `Range`.
    var method: String = "GET"
    /// The request body, for methods that carry one.
    var body: [UInt8]?
    /// Whether curl follows redirects itself (off when a delegate decides each one).
    var followsRedirects = true
    /// A user name and password from an authentication challenge, and the scheme they are for
    /// (`CURLAUTH_BASIC` or `CURLAUTH_DIGEST`).
    var credential: (user: String, password: String, scheme: UInt)?
}

/// libcurl's `CURLAUTH_*` bits (macros Swift does not import).
enum CurlAuth {
    static let basic: UInt = 1 << 0
    static let digest: UInt = 1 << 1
}

/// One libcurl easy handle: one HTTP request of one segment.
///
/// Callbacks arrive on the owning `CurlMulti`'s queue. `onBody` receives curl's own buffer (no
/// copy) and returns how many bytes it took; fewer than offered stops the transfer.
final class CurlEasy: @unchecked Sendable {
    // Unchecked: used only on the owning CurlMulti's queue, like every curl call.
    let handle: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private var headParser: ResponseHeadParser

    var onHead: (ResponseHead) -> Void = { _ in }
    var onBody: (UnsafeRawBufferPointer) -> Int = { $0.count }
    var onDone: (CURLcode, String) -> Void = { _, _ in }

    init(options: RequestOptions, range: String?, extraHeaders: [String], fresh: Bool = false, multi: CurlMulti) {
        guard let handle = curl_easy_init() else { fatalError("curl_easy_init failed (out of memory?)") }
        self.handle = handle
        headParser = ResponseHeadParser()
        headParser.followsRedirects = options.followsRedirects
        // Digest authentication costs curl one 401 before the answer: that head is curl's.
        headParser.skipsAuthChallenge = options.credential.map { $0.scheme == CurlAuth.digest } ?? false
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        ccurl_easy_setopt_string(handle, CURLOPT_URL, options.url)
        ccurl_easy_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        ccurl_easy_setopt_string(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
        ccurl_easy_setopt_long(handle, CURLOPT_FOLLOWLOCATION, options.followsRedirects ? 1 : 0)
        // As many as URLSession follows, and as a delegate is asked about.
        ccurl_easy_setopt_long(handle, CURLOPT_MAXREDIRS, DownloadOperation.maxRedirects)
        if options.method != "GET" {
            if let body = options.body {
                ccurl_easy_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
                body.withUnsafeBufferPointer { bytes in
                    _ = ccurl_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS,
                                                  UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!))
                }
            }
            if options.method != "POST" || options.body == nil {
                ccurl_easy_setopt_string(handle, CURLOPT_CUSTOMREQUEST, options.method)
            }
        }
        if let credential = options.credential {
            ccurl_easy_setopt_string(handle, CURLOPT_USERNAME, credential.user)
            ccurl_easy_setopt_string(handle, CURLOPT_PASSWORD, credential.password)
            ccurl_easy_setopt_long(handle, CURLOPT_HTTPAUTH, Int(credential.scheme))
        }
        ccurl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        // Separate TCP connections are the point of segmenting: no HTTP/2 multiplexing.
        ccurl_easy_setopt_long(handle, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1)
        ccurl_easy_setopt_long(handle, CURLOPT_BUFFERSIZE, options.bufferSize)
        ccurl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, options.connectTimeoutMilliseconds)
        ccurl_easy_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, max(1, options.minimumBytesPerSecond))
        ccurl_easy_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, options.stallTimeoutSeconds)
        ccurl_easy_setopt_long(handle, CURLOPT_TCP_NODELAY, 1)
        ccurl_easy_setopt_string(handle, CURLOPT_USERAGENT, options.userAgent)
        ccurl_easy_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        if let range { ccurl_easy_setopt_string(handle, CURLOPT_RANGE, range) }
        if fresh {
            // The last connection may have been left in a bad state (garbage after a response).
            ccurl_easy_setopt_long(handle, CURLOPT_FRESH_CONNECT, 1)
            ccurl_easy_setopt_long(handle, CURLOPT_FORBID_REUSE, 1)
        }
        if let caFile = options.caFile { ccurl_easy_setopt_string(handle, CURLOPT_CAINFO, caFile) }
        if !options.verifyTLS {
            ccurl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0)
            ccurl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0)
        }
        if let proxy = options.proxy { ccurl_easy_setopt_string(handle, CURLOPT_PROXY, proxy) }
        if options.usesNetrc || options.netrcFile != nil {
            // Optional: a user name and password in the URL win over the file's.
            ccurl_easy_setopt_long(handle, CURLOPT_NETRC, Int(CURL_NETRC_OPTIONAL.rawValue))
            if let file = options.netrcFile { ccurl_easy_setopt_string(handle, CURLOPT_NETRC_FILE, file) }
        }
        if let cookieFile = options.cookieFile { ccurl_easy_setopt_string(handle, CURLOPT_COOKIEFILE, cookieFile) }
        for header in options.headers + extraHeaders {
            headerList = curl_slist_append(headerList, header)
        }
        if let headerList { ccurl_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList) }

        if let share = multi.share { ccurl_easy_setopt_pointer(handle, CURLOPT_SHARE, share) }
        ccurl_easy_setopt_pointer(handle, CURLOPT_CLOSESOCKETDATA, multi.closeSocketContext)
        ccurl_easy_setopt_closesocket_function(handle, CurlMulti.closeSocketCallback)

        let me = Unmanaged.passUnretained(self).toOpaque()
        ccurl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, me)
        ccurl_easy_setopt_write_function(handle, CURLOPT_WRITEFUNCTION) { buffer, size, count, context in
            let easy = Unmanaged<CurlEasy>.fromOpaque(context!).takeUnretainedValue()
            return easy.onBody(UnsafeRawBufferPointer(start: buffer, count: size * count))
        }
        ccurl_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, me)
        ccurl_easy_setopt_write_function(handle, CURLOPT_HEADERFUNCTION) { buffer, size, count, context in
            let easy = Unmanaged<CurlEasy>.fromOpaque(context!).takeUnretainedValue()
            let bytes = UnsafeRawBufferPointer(start: buffer, count: size * count)
            let line = String(decoding: bytes, as: UTF8.self)
            if let head = easy.headParser.feed(Substring(line), status: easy.responseCode) { easy.onHead(head) }
            return size * count
        }
    }

    deinit {
        curl_easy_cleanup(handle)
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
    }

    /// The URL after redirects.
    var effectiveURL: String? {
        var value: UnsafePointer<CChar>?
        guard ccurl_easy_getinfo_string(handle, CURLINFO_EFFECTIVE_URL, &value) == CURLE_OK,
              let value else { return nil }
        return String(cString: value)
    }

    /// The status code of the last response head, as curl read it (0 before one).
    var responseCode: Int {
        var code = 0
        return ccurl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK ? code : 0
    }

    /// Called by `CurlMulti` when the transfer is over.
    func finished(_ code: CURLcode) {
        var message = String(cString: errorBuffer)
        if message.isEmpty { message = String(cString: curl_easy_strerror(code)) }
        onDone(code, message)
    }
}
