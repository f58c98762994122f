#if canImport(Glibc)
import Glibc
#endif

/// Body bytes of one response held back until they reach a 32 KiB boundary of the file.
///
/// curl hands the write callback at most 16 KiB at a time, and after the response head those
/// pieces start at odd offsets. Written as they come, nearly every `pwrite` begins and ends
/// inside a page, and the page cache pays for the partial pages. Measured on ext4 (Linux 6.18),
/// writing 1 GiB cost a median 0.41 s of system time in 16 KiB pieces at odd offsets, 0.28 s in
/// 16 KiB pieces on boundaries and 0.18 s in 32 KiB ones. 64 KiB pieces were no better: the
/// kernel sizes page-cache folios from the write, and on the benchmark machine (a virtual
/// machine) the larger folios often came from memory the host had to supply afresh, which made
/// a median 1 GiB download 60% slower than with 32 KiB. The transfer loop's thread is the one
/// every byte passes through, so this is time off the download: a 1 GiB download on loopback
/// went from a median 1.17 s to 0.89 s.
///
/// Held bytes are not yet the download's: the plan counts them only once they are handed on
/// (written or compared), so the journal, the hash, seam checks and the stall rule never see
/// bytes that are not on disk. They are handed on when the run reaches a boundary, when the
/// response ends, on every progress tick, before a suspension and before a cancellation, so a
/// slow response is never held back longer than a tick. Only bytes the plan would write are
/// held: the first byte past the segment's end goes on at once with the run before it, so a
/// response that goes on past its range is refused in the callback that brings those bytes,
/// as it was before bytes were held.
final class WriteStage {
    /// The largest run held, and the boundary runs are cut at.
    static let capacity = 32 << 10

    /// The transfer whose response this is; a stage is only flushed while it is still running.
    let owner: ObjectIdentifier
    /// The segment the response is for, and the source (0: the URL, n: mirror n) it comes from.
    let segment: Int
    let source: Int
    private var storage: UnsafeMutableRawPointer?
    /// How many bytes are held.
    private(set) var count = 0
    /// Where in the file the first held byte is expected to go: it only decides where runs are
    /// cut, the plan decides where bytes go when they are handed on.
    private var offset: Int64 = 0
    /// The response was refused while its bytes were held: its next body callback stops it,
    /// and an end without one is reported as the refusal it was.
    var refused = false

    init(owner: ObjectIdentifier, segment: Int, source: Int) {
        self.owner = owner
        self.segment = segment
        self.source = source
    }

    deinit {
        release()
    }

    var isEmpty: Bool { count == 0 }

    /// The held bytes, valid until the next call that changes the stage.
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage, count: count)
    }

    /// Starts holding a run whose first byte goes to `offset`.
    func begin(at offset: Int64) {
        self.offset = offset
        count = 0
    }

    /// Where in the file the byte after the held ones is expected to go.
    var end: Int64 { offset + Int64(count) }

    /// Holds as much of `buffer` as fits before the next boundary, and no more than `limit`
    /// bytes; returns how much it took. The run is complete (`isFull`) when that boundary is
    /// reached.
    func hold(_ buffer: UnsafeRawBufferPointer, limit: Int64 = .max) -> Int {
        guard let base = storage ?? Self.allocate() else { return 0 }
        storage = base
        let taken = Int(min(Int64(min(room, buffer.count)), max(0, limit)))
        if taken > 0, let source = buffer.baseAddress {
            (base + count).copyMemory(from: source, byteCount: taken)
            count += taken
        }
        return taken
    }

    /// The run ends on a boundary and should be handed on.
    var isFull: Bool { room == 0 }

    /// Forgets the held bytes once they were handed on.
    func clear() {
        count = 0
    }

    /// Gives the buffer back once the response has ended (it is made again if needed).
    func release() {
        count = 0
        if let storage { munmap(storage, Self.capacity) }
        storage = nil
    }

    /// A page-aligned buffer of its own mapping. Page-aligned, because the kernel copies it to
    /// the page cache fastest when source and target share their alignment (a 16-byte-aligned
    /// buffer made that copy several times slower); a mapping of its own, because aligned
    /// blocks from malloc left the heap fragmented (a batch of 200 files grew 5 MiB).
    private static func allocate() -> UnsafeMutableRawPointer? {
        let mapped = mmap(nil, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        return mapped == MAP_FAILED ? nil : mapped
    }

    private var room: Int {
        let mask = Int64(Self.capacity - 1)
        return Self.capacity - Int(end & mask) - (end & mask == 0 && count > 0 ? Self.capacity : 0)
    }
}
