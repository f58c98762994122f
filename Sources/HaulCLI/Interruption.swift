import Dispatch
import Foundation

/// Turns SIGINT and SIGTERM into a call (once), instead of killing the process, so a download
/// can write its journal before `haul` exits.
final class Interruption: @unchecked Sendable {
    // Unchecked: `sources` is written once in init and only cancelled after; `fired` is guarded
    // by `lock`.
    private var sources: [any DispatchSourceSignal] = []
    private let lock = NSLock()
    private var fired = false

    init(_ handler: @escaping @Sendable () -> Void) {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self, self.lock.withLock({ () -> Bool in
                    defer { self.fired = true }
                    return !self.fired
                }) else { return }
                handler()
            }
            source.activate()
            sources.append(source)
        }
    }

    /// Whether a signal arrived.
    var happened: Bool { lock.withLock { fired } }

    deinit { for source in sources { source.cancel() } }
}
