import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HaulDaemon

/// A local client of `haul daemon`: finds it through the state directory (its address and
/// secret) and calls aria2's JSON-RPC methods.
struct DaemonClient {
    let url: URL
    let secret: String

    /// The daemon that last ran with `stateDirectory`, or a usage error saying how to start one.
    static func local(stateDirectory: String?) throws -> DaemonClient {
        guard let endpoint = Daemon.endpoint(stateDirectory: stateDirectory) else {
            throw ClientError("no haul daemon has run here; start one with: haul daemon --dir DIR")
        }
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        return DaemonClient(url: URL(string: "http://\(host):\(endpoint.port)/jsonrpc")!, secret: endpoint.secret)
    }

    /// Calls `method` (the token is added); returns its result or throws its error message.
    func call(_ method: String, _ params: [Any] = []) async throws -> Any {
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONSerialization.data(withJSONObject: [
            "jsonrpc": "2.0", "id": "haul", "method": method, "params": ["token:\(secret)"] + params,
        ])
        let data: Data
        do {
            (data, _) = try await URLSession.shared.data(for: request)
        } catch {
            throw ClientError("the haul daemon at \(url.absoluteString) does not answer (\(error.localizedDescription)); is it running?")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ClientError("the daemon sent an answer that is not JSON-RPC")
        }
        if let error = object["error"] as? [String: Any] {
            throw ClientError(error["message"] as? String ?? "the daemon refused the call")
        }
        guard let result = object["result"] else { throw ClientError("the daemon's answer has no result") }
        return result
    }
}

/// A message for the person at the terminal.
struct ClientError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
