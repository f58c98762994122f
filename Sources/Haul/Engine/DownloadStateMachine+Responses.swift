/// How the download state machine judges a response head before any of its body is accepted:
/// the status, the range, the length and every validator of the first response.
extension DownloadStateMachine {
    /// A final response head arrived for `segment`'s request. Its body reaches the file only if
    /// this accepts it (`plan.unblock`).
    mutating func received(_ head: ResponseHead, for segment: Int) -> [Action] {
        guard !isFinished, let request = requests[segment] else { return [] }
        if let problem = head.framingProblem {
            // Its body cannot be told from what follows it: never written, asked again.
            reject(segment, .transport(code: 8, message: problem), retryable: true)
            return []
        }
        if [408, 425, 429, 500, 502, 503, 504].contains(head.status) {
            reject(segment, .httpStatus(head.status), retryable: true, retryAfter: head.retryAfterSeconds)
            return []
        }
        if request.mirror == 0, let contradiction = lengthContradiction(head) {
            // No restart can make such a server consistent: neither length can be trusted.
            return fail(.remoteFileChanged(reason: contradiction))
        }
        if request.kind == .range, request.mirror != 0 || !mirrors.mirrors[request.mirror].validated {
            // Every answer of a mirror is held to the download's length and validators.
            if let actions = validateMirror(head, for: request) { return actions }
        }
        switch request.kind {
        case .probe: return receivedProbe(head, segment: segment)
        case .range: return receivedRange(head, for: request)
        case .whole: return receivedWhole(head, for: request)
        }
    }

    /// How `head`'s validators differ from those of the version being downloaded, or `nil`.
    /// Every validator is compared (weak ETags with the weak comparison of RFC 9110 §8.8.3.2);
    /// one that disappears or appears is a change.
    func validatorChange(_ head: ResponseHead) -> String? {
        switch (etag, head.etag) {
        case (nil, nil): break
        case (let expected?, nil): return "its ETag \(expected) disappeared"
        case (nil, let now?): return "an ETag \(now) appeared"
        case (let expected?, let now?):
            let weak = expected.hasPrefix("W/") || now.hasPrefix("W/")
            if weak ? Self.opaqueTag(expected) != Self.opaqueTag(now) : expected != now {
                return "ETag \(expected) became \(now)"
            }
        }
        switch (lastModified, head.lastModified) {
        case (nil, nil): break
        case (let expected?, nil): return "its Last-Modified \(expected) disappeared"
        case (nil, let now?): return "a Last-Modified \(now) appeared"
        case (let expected?, let now?):
            if expected != now { return "Last-Modified \(expected) became \(now)" }
        }
        return nil
    }

    /// Records the complete length a strong ETag came with (a `206`'s `Content-Range` total, a
    /// `200`'s `Content-Length`), and says why not when an earlier answer gave the same ETag
    /// another length. A strong ETag names one sequence of bytes; a server that gives it two
    /// lengths (say a `Content-Length` that disagrees with its own `Content-Range`, and then the
    /// same short `Content-Length` on the whole file) would otherwise have its shorter story
    /// saved as the file after the fallback to one stream.
    mutating func lengthContradiction(_ head: ResponseHead) -> String? {
        guard let etag = head.etag, !etag.hasPrefix("W/") else { return nil }
        let claimed: Int64?
        switch head.status {
        case 206: claimed = head.isMultipart ? nil : head.contentRange?.completeLength
        case 200: claimed = head.contentLength
        default: claimed = nil
        }
        guard let claimed else { return nil }
        if let earlier = lengthsByETag[etag], earlier != claimed {
            return "its answers give one version (ETag \(etag)) two lengths, \(earlier) and \(claimed) bytes, so neither can be trusted"
        }
        lengthsByETag[etag] = claimed
        return nil
    }

    /// No file is this long (4 EiB); larger totals are lies that would overflow offsets.
    static let largestLength: Int64 = 1 << 62

    private static func opaqueTag(_ etag: String) -> Substring {
        etag.hasPrefix("W/") ? etag.dropFirst(2) : Substring(etag)
    }

    // MARK: By request kind

    private mutating func receivedProbe(_ head: ResponseHead, segment: Int) -> [Action] {
        switch head.status {
        case 206:
            guard let range = head.contentRange, !head.isMultipart else {
                // A 206 without one Content-Range cannot be placed: fetch the file as one stream.
                return restart(reason: "the server answered a range request without one Content-Range",
                               singleStream: true, sameVersion: true)
            }
            guard range.first == 0, let last = range.last, head.contentLength.map({ $0 == last + 1 }) ?? true else {
                return rangeFault(segment, expected: "bytes 0-", received: describe(head))
            }
            if let length = range.completeLength, length > Self.largestLength {
                return rangeFault(segment, expected: "a length under 2^62 bytes", received: describe(head))
            }
            guard let length = range.completeLength else {
                // `bytes 0-N/*`: the server does not know the file's length. Its body would be
                // taken for whatever the connection delivers (without Content-Length), or for
                // the whole file when the server sent only its first N + 1 bytes. A request
                // without Range gets the file with HTTP's own framing instead.
                return restart(reason: "the server does not know the file's length (Content-Range: \(describe(head))): "
                               + "fetching it without Range", singleStream: true)
            }
            adopt(head, segment: segment)
            rangesSupported = true
            if awaitingDescription {
                // The metalink the response names may bring mirrors and piece hashes: the probe
                // streams on alone until it is judged (`described`), then the rest is split.
                plan.setSingleStream(length: length, probe: segment)
                return unverifiedNote() + [.preallocate(length: length)]
            }
            if isChunked {
                // The probe goes on through the whole file until more connections are wanted.
                plan.split(length: length, firstChunk: length, probe: segment)
                return unverifiedNote() + [.preallocate(length: length)] + fill()
            }
            let added = plan.split(length: length, connections: options.connections, probe: segment)
            return unverifiedNote() + [.preallocate(length: length)] + added.map { start(segment: $0, kind: .range) }
        case 200..<300:
            adopt(head, segment: segment)
            plan.setSingleStream(length: head.contentLength, probe: segment)
            return [.preallocate(length: head.contentLength ?? 0)]
        case 416 where head.contentRange?.completeLength == 0:
            // The only answer a server can give to `bytes=0-` for an empty file.
            adopt(head, segment: segment)
            plan.setSingleStream(length: 0, probe: segment)
            return [.preallocate(length: 0)]
        default:
            reject(segment, .httpStatus(head.status), retryable: false)
            return []
        }
    }

    private mutating func receivedRange(_ head: ResponseHead, for request: Request) -> [Action] {
        let length = plan.length
        switch head.status {
        case 206:
            if let total = head.contentRange?.completeLength, let length, total != length {
                return remoteChanged("its length \(length) became \(total)")
            }
            if request.mirror == 0, let change = validatorChange(head) {
                return remoteChanged(change)
            }
            guard let range = head.contentRange, !head.isMultipart else {
                return restart(reason: "the server answered a range request without one Content-Range",
                               singleStream: true, sameVersion: true)
            }
            let last = request.through ?? (length.map { $0 - 1 } ?? -1)
            guard range.first == request.from, range.last == last, range.completeLength == length,
                  head.contentLength.map({ $0 == last - request.from + 1 }) ?? true
            else {
                let asked = "bytes \(request.rangeSpec ?? "")/\(length.map(String.init) ?? "*")"
                return rangeFault(request.segment, expected: asked, received: describe(head))
            }
            plan.unblock(request.segment)
            return []
        case 200 where request.ifRange != nil:
            // If-Range did not match, so the server sends a new version whole; unless its
            // validators are the same, when it only ignored Range: then one stream from byte 0.
            if let change = validatorChange(head) { return remoteChanged(change) }
            if let expected = length, let now = head.contentLength, now != expected {
                return remoteChanged("its length \(expected) became \(now)")
            }
            return restart(reason: "the server answered a range request with the whole file", singleStream: true,
                           sameVersion: true)
        case 200:
            // Range support is gone (or was never real): one stream from byte 0.
            if request.mirror == 0, let change = validatorChange(head) { return remoteChanged(change) }
            return restart(reason: "the server stopped honouring ranges", singleStream: true, sameVersion: true)
        case 416:
            return remoteChanged("bytes \(request.rangeSpec ?? "") are no longer there (416): the file got shorter")
        default:
            reject(request.segment, .httpStatus(head.status), retryable: false)
            return []
        }
    }

    /// A request without `Range`: the first of a single-stream download (after a restart), or
    /// a retry of one, whose bytes already on disk are compared as they arrive again.
    private mutating func receivedWhole(_ head: ResponseHead, for request: Request) -> [Action] {
        if head.status == 206 {
            reject(request.segment, .invalidContentRange(expected: "the whole file", received: describe(head)),
                   retryable: true)
            return []
        }
        guard (200..<300).contains(head.status) else {
            reject(request.segment, .httpStatus(head.status), retryable: false)
            return []
        }
        if phase == .probing {
            if let known = fallbackLength, validatorChange(head) == nil {
                // The same version as before the fallback: it must be as long as it was.
                if let length = head.contentLength, length != known {
                    return remoteChanged("its length \(known) became \(length)")
                }
                adopt(head, segment: request.segment)
                plan.setSingleStream(length: known, probe: request.segment)
                return [.preallocate(length: known)]
            }
            fallbackLength = nil
            adopt(head, segment: request.segment)
            plan.setSingleStream(length: head.contentLength, probe: request.segment)
            return [.preallocate(length: head.contentLength ?? 0)]
        }
        if let expected = plan.length, let length = head.contentLength, length != expected {
            return remoteChanged("its length \(expected) became \(length)")
        }
        if let change = validatorChange(head) {
            return remoteChanged(change)
        }
        plan.unblock(request.segment)
        return []
    }

    // MARK: Helpers

    /// The first response of the download (or of a restart): its validators describe the
    /// version, and its body is accepted.
    private mutating func adopt(_ head: ResponseHead, segment: Int) {
        if let probe = requests[probeSegment] { mirrors.validated(probe.mirror) }
        probeHead = head
        etag = head.etag
        lastModified = head.lastModified
        phase = .transferring
        plan.unblock(segment)
    }

    /// Logs once that nothing but seam checks can tell a changed file.
    private func unverifiedNote() -> [Action] {
        validator == nil ? [.unverifiable] : []
    }

    /// A `206` that does not carry exactly the range asked for: the body is refused and the
    /// segment retried; after a few such answers ranges are not trusted any more and the file is
    /// fetched as one stream.
    private mutating func rangeFault(_ segment: Int, expected: String, received: String) -> [Action] {
        rangeFaults += 1
        let error = HaulError.invalidContentRange(expected: expected, received: received)
        if rangeFaults >= options.maxRangeFaults {
            guard options.restartsOnRemoteChange else { return fail(error) }
            return restart(reason: "the server kept sending wrong byte ranges (asked for \(expected), got \(received))",
                           singleStream: true, sameVersion: true)
        }
        reject(segment, error, retryable: true)
        return []
    }

    /// A mirror's every response must be a `206` for the same length and validators as the
    /// download's; otherwise the mirror is dropped and the segment retried elsewhere, or, when it
    /// is the last source left, the download starts over. Returns `nil` when the response is fine.
    private mutating func validateMirror(_ head: ResponseHead, for request: Request) -> [Action]? {
        var problem: String?
        let held = !options.identifiedByHashes && !hasOwnValidators(request.mirror) && !options.mirrorsMayDifferInValidators
        // Equal lengths prove nothing: two versions of a file often have the same size, and a
        // difference inside one response is never seen at a seam.
        let untied = held && !checksumKnown && !sharesValidator(head)
        if head.status == 200, request.ifRange != nil, let mismatch = mirrorValidatorMismatch(head) {
            // If-Range carried the first source's validator: a mirror whose own differs (the
            // same bytes with another mtime, say) sends the whole file, which says nothing of ranges.
            problem = "\(mismatch), so it did not honour If-Range and sent the whole file"
        } else if head.status == 200, request.ifRange != nil, untied {
            problem = Self.untiedReason
        } else if head.status != 206 {
            problem = "it answered HTTP \(head.status) to a range request"
        } else if let length = plan.length, head.contentRange?.completeLength != length {
            problem = "its file is \(head.contentRange?.completeLength.map(String.init) ?? "of unknown length"), not \(length) bytes"
        } else if held, let mismatch = mirrorValidatorMismatch(head) {
            problem = mismatch
        } else if untied {
            problem = Self.untiedReason
        }
        guard let problem else {
            mirrors.validated(request.mirror)
            return nil
        }
        let error = HaulError.remoteFileChanged(reason: "mirror \(request.mirror): \(problem)")
        if mirrors.drop(request.mirror, reason: problem) {
            reject(request.segment, error, retryable: true)
            return [.droppedMirror(index: request.mirror, reason: problem)]
        }
        if !mirrors.mirrors[request.mirror].enabled {
            // Dropped already (another request found it first): this segment goes elsewhere.
            reject(request.segment, error, retryable: true)
            return []
        }
        // The last source left serves another file than the one begun: start over from it.
        return remoteChanged("mirror \(request.mirror): \(problem)")
    }

    /// How a mirror's validators differ from the download's, or `nil`.
    private func mirrorValidatorMismatch(_ head: ResponseHead) -> String? {
        if let expected = etag, let other = head.etag, other != expected {
            return "its ETag \(other) is not the first source's \(expected)"
        }
        if let expected = lastModified, let other = head.lastModified, other != expected {
            return "its Last-Modified \(other) is not the first source's \(expected)"
        }
        return nil
    }

    /// Why a mirror that nothing ties to the first source's file is dropped, and what to do.
    static let untiedReason = "nothing ties it to the first source's file: no strong ETag or Last-Modified in common and no "
        + "checksum to verify the result; to use it, give the file's SHA-256 (haul get --checksum) or vouch that both "
        + "serve the same bytes (--same-file)"

    /// Whether `mirror`'s own validators stand: it was admitted on a digest or a metalink's
    /// hashes, and they still check the file (a restart to another version may have lost the
    /// server's digest, and then the mirror is held to the new version's validators).
    func hasOwnValidators(_ mirror: Int) -> Bool {
        mirrors.mirrors[mirror].ownValidators && (checksumKnown || pieces != nil)
    }

    /// Whether `head` names the same version as the download's validators: an equal strong
    /// ETag or an equal Last-Modified (mirrors copied with their modification times keep it).
    private func sharesValidator(_ head: ResponseHead) -> Bool {
        if let expected = etag, !expected.hasPrefix("W/"), head.etag == expected { return true }
        if let expected = lastModified, head.lastModified == expected { return true }
        return false
    }

    private func describe(_ head: ResponseHead) -> String {
        guard let range = head.contentRange else { return "no Content-Range" }
        let total = range.completeLength.map(String.init) ?? "*"
        var text = "bytes */\(total)"
        if let first = range.first, let last = range.last {
            text = "bytes \(first)-\(last)/\(total)"
            if let length = head.contentLength, length != last - first + 1 {
                text += " with Content-Length \(length)"
            }
        }
        return text
    }
}
