import CCurl
import Dispatch
import Foundation

// The journal, the progress tick, durability syncs and the whole-download deadline.
extension DownloadOperation {
    /// The resume blob for the bytes on disk now; `nil` when the download cannot be resumed
    /// (`finished`: also once all its bytes are in, for one whose name was taken).
    func makeResumeData(finished: Bool = false) -> ResumeData? {
        guard finished ? machine.canBeResumed : machine.isResumable, let length = machine.plan.length, let file,
              var identity = try? file.identity(), let url = URL(string: settings.request.url) else { return nil }
        identity.path = files.partPath
        let done = machine.plan.doneRanges
        if sample == nil, let first = done.first {
            let count = Int(min(first.count64, 64 << 10))
            if let digest = file.sha256(offset: first.lowerBound, count: count) {
                sample = ResumeData.Sample(offset: first.lowerBound, length: Int64(count), sha256: digest)
            }
        }
        // A password in the URL stays in memory unless the caller opts in, as header credentials do.
        let recorded = settings.recordsCredentials ? url : url.withoutCredentials
        var resume = ResumeData(
            url: recorded, finalURL: effectiveURL.flatMap(URL.init(string:)).flatMap { $0 == url ? nil : $0.withoutCredentials },
            headers: settings.resumeHeaders, etag: machine.etag, lastModified: machine.lastModified,
            length: length, tempFile: identity, sample: sample, doneRanges: done,
            syncedRanges: syncedRanges, bootID: bootID, destination: files.destinationPath,
            expectedSHA256: expected?.source == .caller || expected?.source == .metalink ? expected?.digest.hex : nil,
            mirrors: settings.pieces == nil ? [] : mirrorURLs.compactMap { URL(string: $0)?.withoutCredentials },
            pieceLength: settings.pieces?.length, verifiedPieces: machine.pieces?.verified ?? [])
        if let expected, expected.source == .reprDigest || expected.source == .digest {
            resume.serverSHA256 = expected.digest.hex
            resume.serverDigestHeader = expected.source
        }
        resume.adoptedPrefix = adoptedPrefix
        return resume
    }

    /// The whole download's time bound: when it passes, the download fails as timed out and
    /// keeps what it wrote.
    func startDeadline() {
        guard let limit = settings.maxDuration else { return }
        let item = DispatchWorkItem { [weak self] in
            guard let self else { return }
            let seconds = Int(limit.secondsValue.rounded(.up))
            run(machine.diskFailed(.transport(code: Int(CURLE_OPERATION_TIMEDOUT.rawValue),
                                              message: "the download took longer than \(seconds) s")))
        }
        deadline = item
        multi.queue.asyncAfter(deadline: .now() + limit.dispatchInterval, execute: item)
    }

    func startProgressTimer() {
        startRateTimer()
        let timer = DispatchSource.makeTimerSource(queue: multi.queue)
        timer.schedule(deadline: .now() + .milliseconds(100), repeating: .milliseconds(100), leeway: .milliseconds(20))
        timer.setEventHandler { [weak self] in self?.progressTick() }
        progressTimer = timer
        timer.activate()
    }

    /// Hands the hasher the done prefix and starts writeback of what was written since the last
    /// call, so neither is left with much when the last byte lands. Runs on the tick and every
    /// `keepUpStep` bytes from the write path.
    func keepUp() {
        if let hasher {
            let prefix = machine.plan.writtenEnd(from: 0)
            if prefix > 0 { hasher.advance(to: prefix) }
        }
        if let writeback {
            let epoch = machine.plan.epoch
            writeback.advance(machine.plan.segments.lazy.filter { $0.epoch == epoch }.map { ($0.id, $0.start, $0.cursor, $0.end) },
                              epoch: epoch)
        }
    }

    /// `keepUp` runs from the write path each time a write crosses a multiple of this (8 MiB).
    static let keepUpShift: Int64 = 23

    /// Ten times a second: feed the hasher the done prefix; journal when a segment advanced a
    /// step; every few seconds make the bytes so far survive a power cut.
    func progressTick() {
        // Bytes held back count from now on: the tick judges what arrived.
        handOnHeld()
        guard !machine.isFinished else { return }
        if let mismatch = resolveSeams(), machine.pieces == nil {
            run(machine.contentMismatch(at: mismatch))
        }
        verifyReadyPieces()
        // Suspended segments do not move by design: they are not judged.
        if !isSuspended {
            let waiting = pausedForRate.isEmpty ? [] : Set(pausedForRate.map(\.segment))
            run(machine.tick(now: ContinuousClock.now - startedAt, busy: multi.busy, waiting: waiting))
        }
        guard !machine.isFinished else { return }
        keepUp()
        guard settings.writesJournal, machine.isResumable, !journalFailed else { return }
        let epoch = machine.plan.epoch
        var advanced = false
        for segment in machine.plan.segments where segment.epoch == epoch {
            if segment.cursor - (journalCursors[segment.id] ?? segment.start) >= settings.journalStep {
                advanced = true
                break
            }
        }
        if advanced { writeJournal(durable: false) }
        if let interval = settings.durabilityInterval, !syncInFlight, ContinuousClock.now - lastSync >= interval {
            syncForPowerLoss()
        }
    }

    func writeJournal(durable: Bool) {
        guard let data = makeResumeData()?.encoded() else { return }
        do throws(HaulError) {
            try journal.write(data, durable: durable)
            for segment in machine.plan.segments { journalCursors[segment.id] = segment.cursor }
        } catch {
            // A journal that cannot be written costs resumability, not the download.
            journalFailed = true
            logger.warning("journal disabled: \(error)")
        }
    }

    /// `fdatasync` on a disk thread (one at a time per download: `syncInFlight`), then record
    /// what it covered and sync the journal. Only ranges written before the sync started count
    /// as synced.
    func syncForPowerLoss() {
        guard let file else { return }
        let fd = file.duplicateDescriptor()
        guard fd >= 0 else { return }
        let covered = machine.plan.doneRanges
        let epoch = machine.plan.epoch
        syncInFlight = true
        lastSync = .now
        DiskWorkers.shared.async { [self] in
            let ok = fdatasync(fd) == 0
            close(fd)
            multi.queue.async { [self] in
                syncInFlight = false
                guard ok, !machine.isFinished, machine.plan.epoch == epoch else { return }
                syncedRanges = covered
                writeJournal(durable: true)
            }
        }
    }
}
