/// How the download state machine handles a metalink's piece hashes: a piece that fails its
/// hash is fetched again from another source, and a source that delivers bad pieces is dropped.
extension DownloadStateMachine {
    /// Pieces whose bytes are all on disk and that are to be hashed now.
    mutating func piecesReady() -> [Int] {
        guard pieces != nil, phase == .transferring else { return [] }
        return pieces!.takeReady(done: plan.doneRanges)
    }

    /// Piece `index` has its digest. Finishes the download when it was the last one missing.
    mutating func piecePassed(_ index: Int) -> [Action] {
        guard !isFinished else { return [] }
        pieces?.passed(index)
        if plan.isComplete || plan.isWrittenThrough { return finishNow() }
        return []
    }

    /// Piece `index` does not have its digest. Its bytes are fetched again from a source that
    /// did not write it; every source that wrote it is blamed, and one blamed
    /// `PieceLedger.dropAfter` times is dropped (its running requests go to other sources).
    /// A piece that keeps failing, or a server whose ranges cannot be used, ends the download.
    mutating func pieceFailed(_ index: Int) -> [Action] {
        guard !isFinished, phase == .transferring, var ledger = pieces else { return [] }
        let (blamed, toDrop) = ledger.failed(index)
        pieces = ledger
        let range = ledger.range(of: index)
        var actions: [Action] = [.badPiece(index: index, offset: range.lowerBound, sources: blamed)]
        guard ledger.failuresByPiece[index, default: 0] < Self.maxPieceFailures, rangesSupported, !singleStream else {
            return actions + fail(.badPiece(index: index, offset: range.lowerBound,
                                            reason: rangesSupported && !singleStream
                                                ? "it failed its hash \(Self.maxPieceFailures) times, from every source tried"
                                                : "the server cannot send it again on its own (no ranges)"))
        }
        for source in toDrop where mirrors.drop(source, reason: "it delivered bad pieces") {
            actions.append(.droppedMirror(index: source, reason: "it delivered \(ledger.badBySource[source] ?? 0) bad pieces"))
            // Its running requests stop where they are; the rest of their ranges goes elsewhere.
            for (segment, request) in requests.sorted(by: { $0.key < $1.key }) where request.mirror == source {
                let seg = plan.segments[segment]
                guard seg.state == .active, !seg.isTwin, seg.twin == nil else { continue }
                let replacement = plan.replace(segment)
                endRequest(segment)
                actions.append(.cancel(segment: segment))
                if plan.segments[replacement].remaining > 0 {
                    actions.append(start(segment: replacement, kind: .range))
                } else {
                    plan.setState(replacement, .done)
                }
            }
        }
        let id = plan.invalidate(range)
        var mask: UInt64 = 0
        for source in blamed { mask |= 1 << UInt64(min(source, 63)) }
        plan.avoid(id, sources: mask)
        plan.setState(id, .active)
        actions.append(start(segment: id, kind: .range))
        return actions
    }
}
