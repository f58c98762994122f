import Foundation
import Haul

/// aria2's JSON-RPC methods over the daemon's queue: requests in, responses out, no I/O.
///
/// Every method runs on the queue's own dispatch queue (`handle` hops there), so one request
/// sees one consistent queue, and a change is saved before its answer is built.
final class RPCService: @unchecked Sendable {
    // Unchecked: immutable after init; the queue confines its own state.
    let downloads: DownloadQueue
    private let secret: String
    /// Called (shortly after the answer) for `aria2.shutdown` / `aria2.forceShutdown`.
    var onShutdown: @Sendable () -> Void = {}
    /// Set (on the queue) when a call inside `system.multicall` had a wrong token.
    private var unauthorizedInside = false

    static let methods = [
        "aria2.addUri", "aria2.addMetalink", "aria2.remove", "aria2.forceRemove", "aria2.pause", "aria2.forcePause", "aria2.pauseAll",
        "aria2.forcePauseAll", "aria2.unpause", "aria2.unpauseAll", "aria2.tellStatus", "aria2.getUris",
        "aria2.getFiles", "aria2.getServers", "aria2.tellActive", "aria2.tellWaiting", "aria2.tellStopped",
        "aria2.changePosition", "aria2.getOption", "aria2.changeOption", "aria2.getGlobalOption",
        "aria2.changeGlobalOption", "aria2.getGlobalStat", "aria2.purgeDownloadResult",
        "aria2.removeDownloadResult", "aria2.getVersion", "aria2.getSessionInfo", "aria2.saveSession",
        "aria2.shutdown", "aria2.forceShutdown", "system.multicall", "system.listMethods",
        "system.listNotifications", "haul.sessionTasks", "haul.acknowledge",
    ]
    static let notifications = ["aria2.onDownloadStart", "aria2.onDownloadPause", "aria2.onDownloadStop",
                                "aria2.onDownloadComplete", "aria2.onDownloadError"]
    private static let unsupported = ["aria2.addTorrent", "aria2.getPeers"]

    init(downloads: DownloadQueue, secret: String) {
        self.downloads = downloads
        self.secret = secret
    }

    /// Answers one HTTP body: a request object or a batch array, and whether the token was
    /// wrong in any request (the caller slows the answer down). Runs on the queue.
    func handle(_ body: Data) -> (response: Data, unauthorized: Bool) {
        dispatchPrecondition(condition: .onQueue(downloads.queue))
        unauthorizedInside = false
        let (data, unauthorized) = {
            var unauthorized = false
            switch try? JSONSerialization.jsonObject(with: body) {
            case let batch as [Any]:
                guard !batch.isEmpty, batch.count <= 1000 else {
                    return (Self.serialize(Self.error(.invalidRequest("a batch holds 1 to 1000 requests"), id: NSNull())), false)
                }
                var data = Data("[".utf8)
                for (index, item) in batch.enumerated() {
                    if index > 0 { data.append(contentsOf: Array(",".utf8)) }
                    guard data.count <= Self.maximumAnswerBytes else {
                        let id = (item as? [String: Any])?["id"] ?? NSNull()
                        data.append(Self.serialize(Self.error(.invalidRequest(Self.answerTooLarge), id: id)))
                        continue
                    }
                    data.append(answer(item, unauthorized: &unauthorized))
                }
                data.append(contentsOf: Array("]".utf8))
                return (data, unauthorized)
            case let single?:
                return (answer(single, unauthorized: &unauthorized), unauthorized)
            case nil:
                return (Self.serialize(Self.error(.parse, id: NSNull())), false)
            }
        }()
        return (data, unauthorized || unauthorizedInside)
    }

    /// One response object, serialized.
    private func answer(_ request: Any, unauthorized: inout Bool) -> Data {
        guard let request = request as? [String: Any], let method = request["method"] as? String else {
            return Self.serialize(Self.error(.invalidRequest("expected an object with a method"), id: NSNull()))
        }
        let id = request["id"] ?? NSNull()
        do throws(RPCError) {
            let result = try call(method, params: request["params"] as? [Any] ?? [])
            guard let encoded = result as? EncodedJSON else {
                return Self.serialize(["jsonrpc": "2.0", "id": id, "result": result])
            }
            // Splice the encoded result into the envelope (the id serialized on its own).
            let idJSON = Self.serialize([id]).dropFirst().dropLast()
            var data = Data("{\"jsonrpc\":\"2.0\",\"id\":".utf8)
            data.append(contentsOf: idJSON)
            data.append(contentsOf: Array(",\"result\":".utf8))
            data.append(encoded.data)
            data.append(contentsOf: Array("}".utf8))
            return data
        } catch {
            if error == .unauthorized { unauthorized = true }
            return Self.serialize(Self.error(error, id: id))
        }
    }

    /// How large one answer (a batch's or a multicall's) grows before its further calls are
    /// refused: a few small requests must not make the daemon build gigabytes.
    static let maximumAnswerBytes = 16 << 20
    static let answerTooLarge = "the answer passed 16 MiB: ask for fewer results per request"

    private static func serialize(_ object: Any) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.fragmentsAllowed])) ?? Data()
    }

    static func error(_ error: RPCError, id: Any) -> [String: Any] {
        ["jsonrpc": "2.0", "id": id, "error": ["code": error.code, "message": error.message]]
    }

    /// One method call; `params` still carries the `token:` argument.
    func call(_ method: String, params: [Any]) throws(RPCError) -> Any {
        var params = params
        if method.hasPrefix("aria2.") || method.hasPrefix("haul.") {
            guard let token = params.first as? String, token.hasPrefix("token:"),
                  Self.constantTimeEqual(String(token.dropFirst(6)), secret) else { throw .unauthorized }
            params.removeFirst()
        }
        if Self.unsupported.contains(method) { throw .unsupported(method) }
        let arguments = Arguments(method: method, values: params)
        switch method {
        case "aria2.addUri":
            let uris = try arguments.strings(0)
            let options = try arguments.object(1) ?? [:]
            try Options.refuseUnsupported(options)
            let position = try arguments.int(2)
            return try downloads.add(uris: uris, name: try Options.name(options, root: downloads.root),
                                     connections: try Options.connections(options),
                                     checksum: try Options.checksum(options), headers: try Options.headers(options),
                                     position: position, paused: try Options.paused(options),
                                     session: options["haul-session"] as? String,
                                     taskDescription: options["haul-description"] as? String,
                                     speed: try Options.speed(options), minSplit: try Options.minimumSplit(options),
                                     allowOverwrite: try Options.allowOverwrite(options))
        case "aria2.addMetalink":
            let options = try arguments.object(1) ?? [:]
            try Options.refuseUnsupported(options)
            return try addMetalink(try arguments.string(0), options: options, position: try arguments.int(2))
        case "aria2.remove", "aria2.forceRemove":
            let gid = try arguments.string(0)
            try downloads.remove(gid)
            return gid
        case "aria2.pause", "aria2.forcePause":
            let gid = try arguments.string(0)
            try downloads.pause(gid)
            return gid
        case "aria2.pauseAll", "aria2.forcePauseAll":
            for entry in downloads.active + downloads.waiting where entry.status != .paused { try downloads.pause(entry.gid) }
            return "OK"
        case "aria2.unpause":
            let gid = try arguments.string(0)
            try downloads.unpause(gid)
            return gid
        case "aria2.unpauseAll":
            for entry in downloads.waiting where entry.status == .paused { try downloads.unpause(entry.gid) }
            return "OK"
        case "aria2.tellStatus":
            let gid = try arguments.string(0)
            guard let entry = downloads.entry(gid) else { throw .notFound(gid) }
            return Status.object(entry, in: downloads, keys: try arguments.strings(1, optional: true))
        case "aria2.getUris":
            let gid = try arguments.string(0)
            guard let entry = downloads.entry(gid) else { throw .notFound(gid) }
            return Status.uris(entry)
        case "aria2.getFiles":
            let gid = try arguments.string(0)
            guard let entry = downloads.entry(gid) else { throw .notFound(gid) }
            return Status.files(entry, in: downloads)
        case "aria2.getServers":
            let gid = try arguments.string(0)
            guard let entry = downloads.entry(gid) else { throw .notFound(gid) }
            guard entry.status == .active else { throw .invalidParams("GID \(gid) is not active") }
            let speed = "\(downloads.speed(of: gid))"
            return [["index": "1", "servers": entry.uris.prefix(1).map { ["uri": $0, "currentUri": $0, "downloadSpeed": speed] }]]
        case "aria2.tellActive":
            let keys = try arguments.strings(0, optional: true)
            return try Status.list(downloads.active, in: downloads, keys: keys)
        case "aria2.tellWaiting", "aria2.tellStopped":
            let list = method == "aria2.tellWaiting" ? downloads.waiting : downloads.stopped
            let window = Status.window(count: list.count, offset: try arguments.requiredInt(0), num: try arguments.requiredInt(1))
            let keys = try arguments.strings(2, optional: true)
            return try Status.list(window.map { list[$0] }, in: downloads, keys: keys)
        case "aria2.changePosition":
            return try downloads.changePosition(try arguments.string(0), pos: try arguments.requiredInt(1),
                                                how: try arguments.string(2))
        case "aria2.getOption":
            let gid = try arguments.string(0)
            guard let entry = downloads.entry(gid) else { throw .notFound(gid) }
            return Options.describe(entry, root: downloads.root)
        case "aria2.changeOption":
            let gid = try arguments.string(0)
            let options = try arguments.object(1) ?? [:]
            try Options.refuseUnsupported(options)
            if options["out"] != nil || options["dir"] != nil { throw .unsupported("changing out or dir") }
            try downloads.change(gid, connections: try Options.connections(options), checksum: try Options.checksum(options),
                                 speed: try Options.speed(options))
            return "OK"
        case "aria2.getGlobalOption":
            return ["dir": downloads.root.path, "max-concurrent-downloads": "\(downloads.maxConcurrent)",
                    "max-overall-download-limit": "\(downloads.overallLimit)"]
        case "aria2.changeGlobalOption":
            let options = try arguments.object(0) ?? [:]
            if let value = options["max-concurrent-downloads"] {
                guard let count = Int("\(value)"), count >= 1 else { throw .invalidParams("max-concurrent-downloads must be a positive number") }
                downloads.maxConcurrent = count
            }
            if let overall = try Options.overall(options) { downloads.overallLimit = overall }
            return "OK"
        case "aria2.getGlobalStat":
            return ["downloadSpeed": "\(downloads.totalSpeed)", "uploadSpeed": "0",
                    "numActive": "\(downloads.active.count)",
                    "numWaiting": "\(downloads.waiting.count)", "numStopped": "\(downloads.stopped.count)",
                    "numStoppedTotal": "\(downloads.stopped.count)"]
        case "aria2.purgeDownloadResult":
            try downloads.purgeResults()
            return "OK"
        case "aria2.removeDownloadResult":
            try downloads.removeResult(try arguments.string(0))
            return "OK"
        case "aria2.getVersion":
            return ["version": Haul.version, "enabledFeatures": ["HTTPS", "Checksum", "Async DNS"]]
        case "aria2.getSessionInfo":
            return ["sessionId": Self.sessionID]
        case "aria2.saveSession":
            try downloads.save()
            return "OK"
        case "aria2.shutdown", "aria2.forceShutdown":
            // As aria2: answer first, then stop. Stopping at once could close the connection
            // before the answer is written, and the caller would see an empty reply.
            let stop = onShutdown
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(250)) { stop() }
            return "OK"
        case "haul.sessionTasks":
            // Haul's own: a background session's tasks, with its extras.
            let session = try arguments.string(0)
            return downloads.sessionEntries(session).map { entry -> [String: Any] in
                var object = Status.object(entry, in: downloads, keys: nil)
                object["taskDescription"] = entry.taskDescription ?? ""
                object["url"] = entry.uris.first ?? ""
                return object
            }
        case "haul.acknowledge":
            let gid = try arguments.string(0)
            try downloads.acknowledge(gid)
            return "OK"
        case "system.listMethods":
            return Self.methods
        case "system.listNotifications":
            return Self.notifications
        case "system.multicall":
            guard let calls = params.first as? [Any], calls.count <= 1000 else {
                throw .invalidParams("system.multicall takes an array of at most 1000 calls")
            }
            // After one wrong token, later calls are refused untried: a multicall tries one guess,
            // not a thousand (and the answer is slowed down).
            var refusing = false
            // Encoded results are spliced in as they are, never decoded again into objects (a
            // status list as objects takes many times its size), and the answer is bounded.
            var answer = Data("[".utf8)
            for (index, item) in calls.enumerated() {
                if index > 0 { answer.append(UInt8(ascii: ",")) }
                guard answer.count <= Self.maximumAnswerBytes else {
                    answer.append(Self.serialize(["code": 1, "message": Self.answerTooLarge]))
                    continue
                }
                guard let item = item as? [String: Any], let name = item["methodName"] as? String, name != "system.multicall" else {
                    answer.append(Self.serialize(["code": 1, "message": "each call needs a methodName (not system.multicall)"]))
                    continue
                }
                if refusing, name.hasPrefix("aria2.") || name.hasPrefix("haul.") {
                    answer.append(Self.serialize(["code": RPCError.unauthorized.code, "message": RPCError.unauthorized.message]))
                    continue
                }
                do throws(RPCError) {
                    let result = try call(name, params: item["params"] as? [Any] ?? [])
                    if let encoded = result as? EncodedJSON {
                        answer.append(UInt8(ascii: "["))
                        answer.append(encoded.data)
                        answer.append(UInt8(ascii: "]"))
                    } else {
                        answer.append(Self.serialize([result]))
                    }
                } catch {
                    // A wrong token inside slows the whole answer down, as one outside would.
                    if error == .unauthorized {
                        unauthorizedInside = true
                        refusing = true
                    }
                    answer.append(Self.serialize(["code": error.code, "message": error.message]))
                }
            }
            answer.append(UInt8(ascii: "]"))
            return EncodedJSON(data: answer)
        default:
            throw .methodNotFound(method)
        }
    }

    private static let sessionID = String(format: "%016llx%016llx", UInt64.random(in: 0...UInt64.max),
                                          UInt64.random(in: 0...UInt64.max))

    /// Compares without stopping at the first difference, so timing does not tell how much of
    /// a guessed secret was right.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }
}
