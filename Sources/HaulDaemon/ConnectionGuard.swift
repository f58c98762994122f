import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// Keeps a bounded number of RPC connections so slow or idle clients cannot use up the
/// process's descriptors: at the bound, the oldest connection that has not completed a request
/// (else the oldest) makes room for the new one. Every request must also arrive whole within a
/// deadline (`RPCHTTPHandler`).
final class ConnectionGuard: Sendable {
    private struct Entry {
        var channel: any Channel
        var opened: NIODeadline
        var served: Bool
    }

    private let entries = NIOLockedValueBox([ObjectIdentifier: Entry]())
    let maximum: Int

    /// At most half the descriptors this process may open (the rest are for downloads), within
    /// 16…1024.
    init() {
        var limit = rlimit()
        let soft = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(min(limit.rlim_cur, 1 << 20)) : 1024
        maximum = max(16, min(1024, soft / 2))
    }

    /// Registers `channel`, closing another to make room when at the bound.
    func admit(_ channel: any Channel) {
        let evicted: (any Channel)? = entries.withLockedValue { entries in
            var victim: ObjectIdentifier?
            if entries.count >= maximum {
                let ordered = entries.sorted { $0.value.opened < $1.value.opened }
                victim = (ordered.first { !$0.value.served } ?? ordered.first)?.key
            }
            let removed = victim.flatMap { entries.removeValue(forKey: $0)?.channel }
            entries[ObjectIdentifier(channel)] = Entry(channel: channel, opened: .now(), served: false)
            return removed
        }
        evicted?.close(promise: nil)
        channel.closeFuture.whenComplete { [self] _ in
            _ = entries.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
        }
    }

    /// `channel` completed a request: it is a real client.
    func served(_ channel: any Channel) {
        entries.withLockedValue { $0[ObjectIdentifier(channel)]?.served = true }
    }

    /// Raises the soft descriptor limit to the hard one (at most 65536), as servers do.
    static func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = min(limit.rlim_max, 65536)
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = wanted
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
