import CCurl
import Dispatch
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// Requests: the machine's requests as curl handles, retries, and the write path.
extension DownloadOperation {
    /// Starts `request`, or keeps it for `resume()` while the download is suspended.
    func startOrDefer(_ request: DownloadStateMachine.Request) {
        if isSuspended { deferredStarts.append(request) } else { startRequest(request) }
    }

    func startRequest(_ request: DownloadStateMachine.Request) {
        var headers: [String] = []
        if let validator = request.ifRange { headers.append("If-Range: \(validator)") }
        var options = settings.request
        if request.mirror == 0 {
            options.url = primaryURL
            options.method = primaryMethod
            options.body = primaryBody
            options.headers = primaryHeaders
            options.followsRedirects = onRedirect == nil || reportedResponse
            if let credential, Self.sameOrigin(credentialOrigin ?? "", request.kind == .range ? (segmentURL ?? primaryURL) : primaryURL) {
                options.credential = credential
            }
        }
        if request.mirror > 0, request.mirror <= mirrorURLs.count {
            options.url = mirrorURLs[request.mirror - 1]
            if !settings.sendsCredentialsToMirrors { options.headers = options.headers.filter { !Self.isCredential($0) } }
        } else if request.kind == .range, let segmentURL, segmentURL != options.url {
            // Credentials go to the host the caller named, not to one a redirect chose.
            if !Self.sameOrigin(segmentURL, options.url) {
                options.headers = options.headers.filter { !Self.isCredential($0) }
            }
            options.url = segmentURL
        }
        let easy = CurlEasy(options: options, range: request.rangeSpec, extraHeaders: headers, fresh: request.fresh,
                            multi: multi)
        let segment = request.segment
        let fetchStart = Date()
        var answer: ResponseHead?
        easy.onHead = { [unowned self, unowned easy] head in
            guard easies[segment] === easy else { return }
            answer = head
            let asked = intercepts(head, easy: easy, request: request) {
                easy.transactionMetrics(started: fetchStart, request: Self.metricsRequest(options, range: request.rangeSpec),
                                        head: head, viaProxy: options.proxy != nil)
            }
            if asked { return }
            if !reportedResponse {
                reportedResponse = true
                effectiveURL = easy.effectiveURL
                if request.mirror == 0 { segmentURL = effectiveURL }
                if request.kind == .probe {
                    addLinkedMirrors(head)
                    fetchDescription(head)
                }
                onResponse(head, effectiveURL)
            }
            if request.mirror == 0, !readServerDigest, (200..<300).contains(head.status) {
                readServerDigest = true
                adoptServerDigest(head)
            }
            if !(200..<300).contains(head.status) {
                failureReasons[segment] = "HTTP \(head.status)"
                    + (head.retryAfterSeconds.map { " (Retry-After: \($0) s)" } ?? "")
            }
            if let wait = easy.responseWait { machine.measured(wait: wait) }
            let wasProbing = machine.phase == .probing
            run(machine.received(head, for: segment))
            if wasProbing, machine.phase == .transferring, machine.rangesSupported {
                // The transfer's clock starts now: ticks follow the probe's head, so the
                // connection count is first judged one short window after the first byte.
                progressTimer?.schedule(deadline: .now() + machine.governor.firstWindow.dispatchInterval,
                                        repeating: .milliseconds(100), leeway: .milliseconds(10))
                run(machine.tick(now: ContinuousClock.now - startedAt, busy: multi.busy))
            }
        }
        let stage = WriteStage(owner: ObjectIdentifier(easy), segment: segment, source: request.mirror)
        stages[segment] = stage
        easy.onBody = { [unowned self] buffer in write(buffer, stage: stage) }
        easy.onDone = { [unowned self, unowned easy] code, message in
            guard easies[segment] === easy else { return }
            var code = code
            if !handOn(stage), code == CURLE_OK {
                // What curl reports when a write callback refuses bytes.
                code = CURLE_WRITE_ERROR
            }
            stage.release()
            // Handing on the held bytes may have ended this request (a seam mismatch).
            guard easies[segment] === easy else { return }
            easies[segment] = nil
            stages[segment] = nil
            collectedMetrics.append(easy.transactionMetrics(started: fetchStart, request: Self.metricsRequest(options, range: request.rangeSpec),
                                                            head: answer, viaProxy: options.proxy != nil))
            if code != CURLE_OK, failureReasons[segment] == nil {
                // A write error without a disk error is the engine refusing the response's body.
                failureReasons[segment] = code == CURLE_WRITE_ERROR && writeErrors[segment] == nil
                    ? "its response was refused before any byte was kept" : message
            }
            if let error = writeErrors.removeValue(forKey: segment) {
                run(machine.diskFailed(error))
            } else {
                run(machine.transferEnded(segment, .init(curlCode: code, message: message)))
            }
        }
        easies[segment] = easy
        multi.add(easy)
    }

    func scheduleRetry(segment: Int, attempt: Int, retryAfter: Int?) {
        let delay = Backoff.delay(attempt: attempt, base: settings.retryBase, cap: settings.retryCap,
                                  jitter: Double.random(in: 0..<1), retryAfter: retryAfter)
        let reason = failureReasons.removeValue(forKey: segment) ?? "the transfer ended early"
        logger.info("retrying a segment", metadata: ["segment": "\(segment)", "attempt": "\(attempt)",
                                                     "delay": "\((delay.secondsValue * 100).rounded() / 100) s", "reason": "\(reason)"])
        let item = DispatchWorkItem { [self] in
            retryTimers[segment] = nil
            run(machine.retryDue(segment))
        }
        retryTimers[segment]?.cancel()
        retryTimers[segment] = item
        multi.queue.asyncAfter(deadline: .now() + delay.dispatchInterval, execute: item)
    }

    /// The hot path. Bytes the plan would write go into `stage` until they reach a 32 KiB
    /// boundary of the file and are then written at once (see `WriteStage`); bytes that are to
    /// be compared, or refused, go straight on. Returning less than offered stops the transfer;
    /// `ccurl_writefunc_pause` pauses it.
    @inline(__always)
    func write(_ buffer: UnsafeRawBufferPointer, stage: WriteStage) -> Int {
        let segment = stage.segment
        guard file != nil, !stage.refused else { return 0 }
        if rate > 0 {
            // Whole callbacks only (curl cannot take part of one): wait until the bucket holds
            // all of it (or is full, for a callback larger than the bucket: the debt is paid by
            // later waits); curl keeps the bytes meanwhile. A transfer with nothing left to take
            // is stopped, never paused.
            if case .stop = machine.step(for: segment, available: buffer.count) { return 0 }
            let needs = min(Double(buffer.count), bucketSize(rate))
            guard tokens >= needs else {
                if !pausedForRate.contains(where: { $0.segment == segment }) { pausedForRate.append((segment, needs)) }
                return ccurl_writefunc_pause
            }
            tokens -= Double(buffer.count)
        }
        var rest = buffer
        while !rest.isEmpty {
            if stage.isEmpty {
                guard case .write(let offset, _) = machine.step(for: segment, available: rest.count) else { break }
                stage.begin(at: offset)
            }
            // Only bytes inside the segment's range are held; the rest (seam bytes to compare,
            // or bytes to refuse) goes on now, so a refusal stops curl in this very callback.
            let held = stage.hold(rest, limit: machine.plan.segments[segment].end - stage.end)
            // Nothing held with room left: the range ends here, or there is no memory for the stage.
            guard held > 0 || stage.isFull else { break }
            rest = UnsafeRawBufferPointer(rebasing: rest[held...])
            if stage.isFull, !handOn(stage) { return 0 }
        }
        guard !rest.isEmpty else { return buffer.count }
        // Bytes to compare or refuse, or no buffer to hold them in: straight on.
        guard handOn(stage) else { return 0 }
        return deliver(rest, segment: segment, source: stage.source) == rest.count ? buffer.count : 0
    }

    /// Hands the bytes `stage` holds to the plan. Returns false when the response was refused
    /// (it then takes nothing more).
    func handOn(_ stage: WriteStage) -> Bool {
        guard !stage.refused else { return false }
        guard !stage.isEmpty else { return true }
        let held = stage.bytes
        let taken = deliver(held, segment: stage.segment, source: stage.source)
        stage.clear()
        if taken < held.count { stage.refused = true }
        return !stage.refused
    }

    /// Hands on the bytes every running transfer holds: before a tick judges the transfers, and
    /// before they are paused or cancelled. A response refused here (its range was cut short
    /// meanwhile) is stopped here: no later callback may come to stop it.
    func handOnHeld() {
        for (segment, easy) in easies {
            guard let stage = stages[segment], stage.owner == ObjectIdentifier(easy), !stage.isEmpty else { continue }
            if !handOn(stage), easies[segment] === easy { multi.refuse(easy) }
        }
    }

    /// Writes (or compares) `buffer`, the next bytes of `segment`'s response, where the plan
    /// says. Bytes that another response delivered too (seams, twins, a whole-file retry) are
    /// compared instead. Returns how many bytes were taken; fewer than offered means the
    /// response is refused from there.
    func deliver(_ buffer: UnsafeRawBufferPointer, segment: Int, source: Int) -> Int {
        guard let file else { return 0 }
        var taken = 0
        while taken < buffer.count {
            switch machine.step(for: segment, available: buffer.count - taken) {
            case .stop:
                return taken
            case .write(let offset, let count):
                do throws(HaulError) {
                    try file.write(UnsafeRawBufferPointer(rebasing: buffer[taken..<(taken + count)]), at: offset)
                } catch {
                    writeErrors[segment] = error
                    return 0
                }
                machine.advance(segment, by: count)
                machine.pieces?.wrote(offset: offset, count: count, source: source)
                if machine.awaitingDescription { description.earlySources |= 1 << UInt64(min(source, 63)) }
                taken += count
                if (offset + Int64(count)) >> Self.keepUpShift != offset >> Self.keepUpShift {
                    keepUp()
                    // Seam bytes kept for this write's bytes are compared now, not on the next
                    // tick: at loopback speed a tick's worth of chunks would keep megabytes.
                    if seams.hasPending, let mismatch = resolveSeams(), machine.pieces == nil {
                        logger.warning("seam mismatch: two responses differ", metadata: ["offset": "\(mismatch)"])
                        run(machine.contentMismatch(at: mismatch))
                    }
                }
            case .verify(let offset, let count):
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[taken..<(taken + count)])
                let mismatch: Int64?
                do throws(HaulError) {
                    mismatch = try seams.verify(bytes, at: offset, segment: segment, plan: machine.plan, file: file)
                } catch {
                    writeErrors[segment] = error
                    return 0
                }
                machine.advance(segment, by: count)
                taken += count
                if let mismatch {
                    logger.warning("seam mismatch: two responses differ", metadata: ["offset": "\(mismatch)"])
                    // With piece hashes, the hash of the piece says which response was right.
                    if machine.pieces == nil { run(machine.contentMismatch(at: mismatch)) }
                }
            }
        }
        return taken
    }

    /// Compares kept seam bytes whose other side has landed. Returns a mismatch's offset.
    func resolveSeams() -> Int64? {
        guard let file else { return nil }
        do throws(HaulError) {
            return try seams.resolve(plan: machine.plan, file: file)
        } catch {
            logger.warning("could not read back a seam", metadata: ["error": "\(error)"])
            return nil
        }
    }


    /// The request a transaction's metrics describe.
    static func metricsRequest(_ options: RequestOptions, range: String?) -> URLRequest {
        var request = URLRequest(url: URL(string: options.url) ?? URL(fileURLWithPath: "/"))
        request.httpMethod = options.method
        if let range { request.setValue("bytes=\(range)", forHTTPHeaderField: "Range") }
        return request
    }

    /// The URL's own first successful answer may carry an instance digest (`Repr-Digest`,
    /// `Digest`): with no other checksum, the file is verified with it. Only the URL's answer
    /// counts (a mirror's digest describes the mirror's copy), and a digest is only worth
    /// adopting if the file is hashed, so hashing starts here even when it was off.
    func adoptServerDigest(_ head: ResponseHead) {
        guard expected == nil, expectedSHA512 == nil, let server = SHA256Digest.fromServer(head.fields) else { return }
        expected = server
        startHashing()
        logger.info("verifying with the server's digest", metadata: ["header": "\(server.1.rawValue)"])
    }
}
