import CCurl

extension DownloadStateMachine.Outcome {
    /// Classifies how a curl transfer ended: what is worth a retry and what is final.
    init(curlCode code: CURLcode, message: String) {
        if code == CURLE_OK {
            self = .completed
            return
        }
        // curl reports a chunked body cut mid-chunk as a content-encoding error.
        let text = code == CURLE_BAD_CONTENT_ENCODING ? "the response's chunked body was cut or malformed (\(message))" : message
        let error = HaulError.transport(code: Int(code.rawValue), message: text)
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT:
            self = .failed(error, .ifServerAnswered)
        case CURLE_OPERATION_TIMEDOUT, CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
             CURLE_GOT_NOTHING, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_HTTP3,
             // A connection left in a bad state by the last response (garbage after its body
             // reads as "HTTP/0.9" or a weird reply): worth a retry on a fresh connection.
             CURLE_UNSUPPORTED_PROTOCOL, CURLE_WEIRD_SERVER_REPLY, CURLE_BAD_CONTENT_ENCODING:
            self = .failed(error, .yes)
        default:
            self = .failed(error, .no)
        }
    }
}
