import CHaulSystem
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Starts the kernel's writeback of finished stretches of a download's file while it still runs
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), on its own queue, so the `fdatasync` before the
/// final rename (and the periodic one for the journal) finds little left to wait for. It does
/// not make anything durable by itself; the syncs still do.
///
/// Used from the download's queue; the calls run on `queue`, off the write path.
final class Writeback: @unchecked Sendable {
    // Unchecked: `started` is used on the download's queue only; `fd` is immutable and read on
    // `queue` only until `close()` hands its closing to the same queue.
    private let fd: Int32
    /// Writeback is started in steps of at least this many bytes of one segment.
    private let step: Int64
    /// Per segment: where the next writeback starts.
    private var started: [Int: Int64] = [:]
    private var epoch = -1
    private static let queue = DispatchQueue(label: "haul.writeback")

    /// `descriptor` is a duplicate the writeback owns and closes.
    init(descriptor: Int32, step: Int64 = 8 << 20) {
        fd = descriptor
        self.step = step
    }

    /// Starts writeback of what each segment wrote since the last call, in steps, and of the
    /// rest of a segment once it is complete (a download taken in chunks of about 1 MiB has no
    /// segment that ever writes a whole step); returns the ranges started (offset, length).
    @discardableResult
    func advance(_ segments: some Sequence<(id: Int, start: Int64, cursor: Int64, end: Int64)>,
                 epoch: Int) -> [(Int64, Int64)] {
        guard fd >= 0 else { return [] }
        if epoch != self.epoch {
            started.removeAll()
            self.epoch = epoch
        }
        var ranges: [(Int64, Int64)] = []
        for segment in segments {
            let from = max(started[segment.id] ?? segment.start, segment.start)
            guard segment.cursor - from >= step || (segment.cursor >= segment.end && segment.cursor > from) else {
                continue
            }
            ranges.append((from, segment.cursor - from))
            started[segment.id] = segment.cursor
        }
        guard !ranges.isEmpty else { return [] }
        let fd = self.fd
        let due = ranges
        Self.queue.async {
            for (offset, length) in due { _ = chaul_start_writeback(fd, off_t(offset), off_t(length)) }
        }
        return ranges
    }

    /// Starts writeback of the whole file (the kernel passes over what is clean), then closes.
    func finish(length: Int64) {
        let fd = self.fd
        guard fd >= 0 else { return }
        Self.queue.async {
            if length > 0 { _ = chaul_start_writeback(fd, 0, off_t(length)) }
            _ = Glibc.close(fd)
        }
    }

    /// Closes the descriptor once the writebacks already asked for have been started.
    func close() {
        let fd = self.fd
        guard fd >= 0 else { return }
        Self.queue.async { _ = Glibc.close(fd) }
    }
}
