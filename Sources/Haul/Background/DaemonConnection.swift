import CCurl
import Foundation

/// Where a `haul daemon` listens and its secret, as it leaves them in its state directory.
package struct DaemonEndpoint: Sendable, Equatable {
    package var host: String
    package var port: Int
    /// The daemon's Unix socket, when it has one (preferred: private to this user).
    package var socketPath: String?
    package var secret: String

    /// The daemon that last ran with `stateDirectory` (default: `StateDirectory.defaultPath`).
    package static func find(stateDirectory: String? = nil) -> DaemonEndpoint? {
        guard let state = StateDirectory.open(stateDirectory), let data = state.read("rpc-endpoint"),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let host = object["host"] as? String, let port = object["port"] as? Int else { return nil }
        let socket = object["socket"] as? String
        if let given = state.read("rpc-secret-given") {
            return DaemonEndpoint(host: host, port: port, socketPath: socket, secret: String(decoding: given, as: UTF8.self))
        }
        guard let bytes = state.read("rpc-secret"), bytes.count == 32 else { return nil }
        return DaemonEndpoint(host: host, port: port, socketPath: socket,
                              secret: bytes.map { String(format: "%02x", $0) }.joined())
    }
}

/// aria2's JSON-RPC to the daemon through libcurl, over its Unix socket when there is one.
/// Calls block; callers keep them off the session queue.
final class DaemonConnection: Sendable {
    let endpoint: DaemonEndpoint

    init(endpoint: DaemonEndpoint) {
        self.endpoint = endpoint
    }

    /// Calls `method` (the token is added); returns its result or throws a readable error.
    func call(_ method: String, _ params: [Any] = []) throws(HaulError) -> Any {
        let body: Data
        do {
            body = try JSONSerialization.data(withJSONObject: [
                "jsonrpc": "2.0", "id": 1, "method": method, "params": ["token:\(endpoint.secret)"] + params,
            ])
        } catch {
            throw .unsupportedRequest(reason: "a parameter of \(method) cannot be sent as JSON")
        }
        let answer = try post(body)
        guard let object = try? JSONSerialization.jsonObject(with: answer) as? [String: Any] else {
            throw .transport(code: Int(CURLE_WEIRD_SERVER_REPLY.rawValue), message: "the haul daemon sent no JSON-RPC answer")
        }
        if let error = object["error"] as? [String: Any] {
            throw .unsupportedRequest(reason: "the haul daemon refused \(method): \(error["message"] as? String ?? "an error")")
        }
        return object["result"] ?? NSNull()
    }

    private func post(_ body: Data) throws(HaulError) -> Data {
        CurlGlobal.ensureInitialized()
        guard let handle = curl_easy_init() else { throw .transport(code: 2, message: "curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        ccurl_easy_setopt_string(handle, CURLOPT_URL, "http://\(host):\(endpoint.port)/jsonrpc")
        if let socket = endpoint.socketPath, FileManager.default.fileExists(atPath: socket) {
            ccurl_easy_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, socket)
        }
        ccurl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        ccurl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, 15_000)
        ccurl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, 3_000)
        var headers: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "Content-Type: application/json")
        defer { curl_slist_free_all(headers) }
        ccurl_easy_setopt_slist(handle, CURLOPT_HTTPHEADER, headers)
        ccurl_easy_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
        _ = body.withUnsafeBytes { bytes in
            ccurl_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
        }
        let sink = Sink()
        let context = Unmanaged.passUnretained(sink).toOpaque()
        ccurl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, context)
        ccurl_easy_setopt_write_function(handle, CURLOPT_WRITEFUNCTION) { buffer, size, count, context in
            let sink = Unmanaged<Sink>.fromOpaque(context!).takeUnretainedValue()
            let total = size * count
            if let buffer { sink.data.append(UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt8.self), count: total) }
            return sink.data.count > 64 << 20 ? 0 : total
        }
        let code = withExtendedLifetime(sink) { curl_easy_perform(handle) }
        headers = nil
        guard code == CURLE_OK else {
            throw .transport(code: Int(code.rawValue),
                             message: "the haul daemon does not answer (\(String(cString: curl_easy_strerror(code)))); "
                                + "start one with: haul daemon --dir DIR")
        }
        return sink.data
    }

    /// The answer's bytes, filled by curl's write callback on the calling thread.
    private final class Sink {
        var data = Data()
    }
}
