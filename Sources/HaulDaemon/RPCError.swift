/// A JSON-RPC error as aria2 sends it: code 1 for its own failures (with a message), the
/// standard JSON-RPC codes for malformed requests.
enum RPCError: Error, Equatable {
    case parse
    case invalidRequest(String)
    case methodNotFound(String)
    case invalidParams(String)
    case unauthorized
    case notFound(String)
    case unsupported(String)
    case internalError(String)

    var code: Int {
        switch self {
        case .parse: return -32700
        case .invalidRequest: return -32600
        case .methodNotFound: return -32601
        case .invalidParams, .notFound, .unauthorized, .unsupported, .internalError: return 1
        }
    }

    var message: String {
        switch self {
        case .parse: return "Parse error."
        case .invalidRequest(let why): return "Invalid Request: \(why)"
        case .methodNotFound(let name): return "No such method: \(name)"
        case .invalidParams(let why): return why
        case .unauthorized: return "Unauthorized"
        case .notFound(let gid): return "GID \(gid) is not found"
        case .unsupported(let what): return "\(what) is not supported by haul"
        case .internalError(let why): return why
        }
    }
}
