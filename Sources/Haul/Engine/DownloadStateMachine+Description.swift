/// How the download state machine waits for a metalink the first response names (RFC 6249
/// `Link: <…>; rel=describedby`): the probe streams on alone while it is fetched, so the split
/// can use the mirrors it lists; nothing finishes before it is judged, so its piece hashes
/// check every byte, those written before it arrived too.
extension DownloadStateMachine {
    /// The probe's response names a metalink, which is being fetched. Call before the probe's
    /// head is `received`, so the split waits.
    mutating func awaitDescription() {
        guard !isFinished else { return }
        awaitingDescription = true
    }

    /// The metalink was fetched and judged (or could not be used: no sources, no pieces).
    /// `newSources` sources it lists join; their validators are their own, as its hashes say
    /// which file they serve. With `pieces`, every piece is verified from now on and no source
    /// is held to the first one's validators. Then what the probe has left is split over the
    /// connections as it would have been at once, and idle connections take ranges.
    mutating func described(newSources: Int, pieces ledger: PieceLedger?) -> [Action] {
        guard awaitingDescription, !isFinished else { return [] }
        awaitingDescription = false
        if newSources > 0 { _ = mirrors.add(newSources, ownValidators: true) }
        if let ledger {
            pieces = ledger
            plan.alignment = ledger.pieceLength
            mirrors.identifyByHashes()
        }
        var actions: [Action] = []
        if phase == .transferring, rangesSupported, !singleStream, isChunked {
            actions += fill()
        } else if phase == .transferring, rangesSupported, !singleStream {
            if probeSegment >= 0, requests[probeSegment] != nil, plan.segments[probeSegment].state == .active {
                let free = options.connections - requests.count + 1
                for id in plan.splitRemaining(of: probeSegment, connections: free) {
                    actions.append(start(segment: id, kind: .range))
                }
            }
            while requests.count < options.connections, let id = plan.takePending() ?? plan.steal() {
                actions.append(start(segment: id, kind: .range))
            }
        }
        if phase == .transferring, plan.isComplete || plan.isWrittenThrough { actions += finishNow() }
        return actions
    }
}
