import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The width of the terminal on `descriptor`, read with `TIOCGWINSZ` and read again whenever
/// the terminal is resized (`SIGWINCH`).
final class TerminalWidth: @unchecked Sendable {
    // Unchecked: `columns` is guarded by `lock`; `source` is set once in init.
    private let lock = NSLock()
    private var columns: Int
    private var source: (any DispatchSourceSignal)?
    private let descriptor: Int32

    init(descriptor: Int32) {
        self.descriptor = descriptor
        columns = Self.read(descriptor) ?? 80
        signal(SIGWINCH, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGWINCH, queue: .global())
        source.setEventHandler { [weak self] in
            guard let self, let width = Self.read(self.descriptor) else { return }
            self.lock.withLock { self.columns = width }
        }
        source.activate()
        self.source = source
    }

    deinit { source?.cancel() }

    /// Columns now.
    var current: Int { lock.withLock { columns } }

    /// The terminal's columns, or `nil` when `descriptor` is not a terminal (or says 0).
    static func read(_ descriptor: Int32) -> Int? {
        var size = winsize()
        guard ioctl(descriptor, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return Int(size.ws_col)
    }
}
