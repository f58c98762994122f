import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The shared, lock-guarded state of a `ScenarioServer`: the behaviour, the request log, the
/// per-rule counters and the open connections.
final class ScenarioCore: Sendable {
    struct State {
        var requests: [ScenarioRequest] = []
        /// Per rule: how many requests it matched (for `times`) and answered (for redirects).
        var ruleHits: [Int] = []
        var connections = 0
        var open: [Int: any Channel] = [:]
    }

    let behaviour: ScenarioBehaviour
    let state: NIOLockedValueBox<State>

    init(behaviour: ScenarioBehaviour) {
        self.behaviour = behaviour
        state = NIOLockedValueBox(State(ruleHits: Array(repeating: 0, count: behaviour.rules?.count ?? 0)))
    }

    func connectionOpened(_ channel: any Channel) -> Int {
        state.withLockedValue { state in
            state.connections += 1
            state.open[state.connections] = channel
            return state.connections
        }
    }

    func connectionClosed(_ connection: Int) {
        _ = state.withLockedValue { $0.open.removeValue(forKey: connection) }
    }

    /// Records a request and decides its answer.
    func respond(to head: HTTPRequestHead, connection: Int) -> RawResponse {
        let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
        let range = head.headers.first(name: "range")
        let request = ResponseBuilder.Request(method: head.method.rawValue, path: path,
                                              host: head.headers.first(name: "host"), range: range,
                                              ifRange: head.headers.first(name: "if-range"),
                                              keepAlive: head.isKeepAlive)
        return state.withLockedValue { state in
            let index = state.requests.count
            state.requests.append(ScenarioRequest(index: index, connection: connection, method: request.method,
                                                  path: path, range: range, ifRange: request.ifRange))
            let versions = behaviour.versions
            let scheduled = (behaviour.schedule ?? VersionSchedule(kind: .fixed))
                .version(index: index, connection: connection, count: versions.count)
            var action = ResponseAction()
            var redirectTurn = 0
            for (number, rule) in (behaviour.rules ?? []).enumerated() {
                let selector = rule.when ?? RequestSelector()
                let size = versions[min(max(rule.then.version ?? action.version ?? scheduled, 0), versions.count - 1)].size
                let start: Int64? = if let range, case .satisfiable(let asked) = RangeRequest(header: range, size: size) {
                    asked.lowerBound
                } else {
                    nil
                }
                guard selector.matches(index: index, connection: connection, path: path, rangeHeader: range,
                                       start: start, size: size,
                                       authorization: head.headers.first(name: "authorization")) else { continue }
                if let times = selector.times, state.ruleHits[number] >= times { continue }
                if rule.then.redirect != nil { redirectTurn = state.ruleHits[number] }
                state.ruleHits[number] += 1
                action = action.merged(with: rule.then)
            }
            let version = versions[min(max(action.version ?? scheduled, 0), versions.count - 1)]
            let builder = ResponseBuilder(request: request, version: version, action: action,
                                          servesPath: behaviour.servedPaths.contains(path),
                                          rangesSupported: behaviour.ranges ?? true,
                                          bytesPerSecond: behaviour.bytesPerSecond, redirectTurn: redirectTurn)
            return builder.build()
        }
    }
}
