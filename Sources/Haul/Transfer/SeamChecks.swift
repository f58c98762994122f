/// The comparisons at the seams of one download: wherever two responses deliver the same
/// bytes, the second one's bytes are compared with the first one's on disk.
///
/// Bytes whose first delivery has not landed yet (a request reaching forward into a segment
/// that has not written its start, or back into one that has not reached its end) are kept
/// here, a few KiB per request, and compared once the plan says they are written.
/// Confined to the session's queue, like the operation that owns it.
struct SeamChecks {
    private struct Pending {
        var epoch: Int
        var offset: Int64
        var bytes: [UInt8]
    }

    /// Seams compared so far (a request's contiguous overlap counts once).
    private(set) var checked = 0
    /// Seams where the two responses differed.
    private(set) var mismatched = 0
    private var pending: [Pending] = []
    /// Per segment, where its last compared bytes ended: a continuation is the same seam.
    private var lastEnd: [Int: Int64] = [:]

    /// Compares `bytes`, delivered by `segment` for `offset`, with the file where it is
    /// written, and keeps the rest for later. Returns the offset of the first differing byte.
    mutating func verify(_ bytes: UnsafeRawBufferPointer, at offset: Int64, segment: Int, plan: SegmentPlan,
                         file: DataFile) throws(HaulError) -> Int64? {
        if lastEnd[segment] != offset { checked += 1 }
        lastEnd[segment] = offset + Int64(bytes.count)
        let written = Int(min(Int64(bytes.count), plan.writtenEnd(from: offset) - offset))
        if written < bytes.count {
            let rest = offset + Int64(written)
            if let last = pending.indices.last, pending[last].epoch == plan.epoch,
               pending[last].offset + Int64(pending[last].bytes.count) == rest {
                pending[last].bytes.append(contentsOf: bytes[written...])
            } else {
                pending.append(Pending(epoch: plan.epoch, offset: rest, bytes: Array(bytes[written...])))
            }
        }
        guard written > 0 else { return nil }
        return try compare(UnsafeRawBufferPointer(rebasing: bytes[0..<written]), at: offset, file: file)
    }

    /// Compares the kept bytes whose first delivery has landed since. Returns the offset of the
    /// first differing byte.
    mutating func resolve(plan: SegmentPlan, file: DataFile) throws(HaulError) -> Int64? {
        pending.removeAll { $0.epoch != plan.epoch }
        var index = 0
        while index < pending.count {
            let item = pending[index]
            guard plan.writtenEnd(from: item.offset) >= item.offset + Int64(item.bytes.count) else {
                index += 1
                continue
            }
            pending.remove(at: index)
            let result = item.bytes.withUnsafeBytes { bytes in
                Result { () throws(HaulError) in try file.firstDifference(bytes, at: item.offset) }
            }
            if let index = try result.get() {
                mismatched += 1
                return item.offset + Int64(index)
            }
        }
        return nil
    }

    /// Whether bytes are kept until their first delivery lands.
    var hasPending: Bool { !pending.isEmpty }

    /// The download started over: nothing kept is comparable any more.
    mutating func reset() {
        pending.removeAll()
        lastEnd.removeAll()
    }

    private mutating func compare(_ bytes: UnsafeRawBufferPointer, at offset: Int64,
                                  file: DataFile) throws(HaulError) -> Int64? {
        guard let index = try file.firstDifference(bytes, at: offset) else { return nil }
        mismatched += 1
        return offset + Int64(index)
    }
}
