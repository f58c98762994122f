import Dispatch
import Foundation

// Ending: completion, the digest check, publishing, failure and what is kept.
extension DownloadOperation {
    func complete(length: Int64) {
        let receivedAll = onReceivedAll
        onReceivedAll = {}
        receivedAll()
        // The disk starts on what is still dirty now, while the hash takes its tail.
        if settings.syncOnFinish { writeback?.finish(length: length) }
        writeback = nil
        stopEverything()
        guard let file else { return }
        do throws(HaulError) {
            try file.setLength(length)
        } catch {
            discard(DownloadFailure(error: error))
            return
        }
        guard let hasher else {
            moveIntoPlace(length: length, digest: nil)
            return
        }
        // Only the tail is left to hash; wait for it off this queue.
        hasher.finish(length: length) { [self] result in
            multi.queue.async { [self] in
                switch result {
                case .success(let digest): moveIntoPlace(length: length, digest: digest)
                case .failure(let error): discard(DownloadFailure(error: error))
                }
            }
        }
    }

    /// The bytes are complete: check the digest, sync, and rename into place.
    func moveIntoPlace(length: Int64, digest: String?) {
        guard let file else { return }
        if let wanted = expected?.digest.hex ?? expectedSHA512?.hexString, let digest, digest != wanted {
            logger.error("checksum mismatch", metadata: ["expected": "\(wanted)", "actual": "\(digest)"])
            let served = machine.mirrors.mirrors.indices.dropFirst().filter { machine.mirrors.mirrors[$0].validated }
            if !served.isEmpty, settings.pieces == nil, expected?.source != .metalink {
                // Without piece hashes nobody can tell which source's bytes are wrong; the usual
                // cause is a mirror with another version of the file (a metalink's hash, though,
                // may as well be wrong about the URL).
                let names = served.compactMap { URL(string: mirrorURLs[$0 - 1])?.withoutCredentials.absoluteString }
                logger.warning("mirrors delivered part of the file, and one may serve another version: download it again without them",
                               metadata: ["mirrors": "\(names.joined(separator: ", "))"])
            }
            let error = HaulError.checksumMismatch(expected: wanted, actual: digest)
            if settings.keepsFilesFailingChecksum {
                file.close()
                journal.remove()
                finish(.failure(DownloadFailure(error: error)))
            } else {
                discard(DownloadFailure(error: error))
            }
            return
        }
        // The sync and the rename wait for the disk: off the session queue, so the session's
        // other downloads go on meanwhile, and on threads that wait for nothing else, so several
        // downloads' syncs overlap.
        let files = self.files
        let syncs = settings.syncOnFinish
        let record = finishedRecord(length: length, digest: digest)
        DiskWorkers.shared.async { [self] in
            var failure: HaulError?
            var finished: FinishedFile?
            do throws(HaulError) {
                // Before the name: a file under the name carries the record of its own bytes or none.
                if record?.write(to: file.fd) != true { FinishedRecord.remove(from: file.fd) }
                if syncs { try file.syncData() }
                if let destination = files.destinationName {
                    // Published by descriptor: the result is the inode written and hashed here.
                    let written = try file.identity()
                    try files.root.publish(file, named: files.partName, to: destination, in: files.destinationRoot,
                                           replacing: files.replacesDestination)
                    finished = FinishedFile(root: files.destinationRoot, name: destination, device: written.device,
                                            inode: written.inode)
                    if syncs { files.destinationRoot.sync() }
                }
                file.close()
            } catch {
                failure = error
            }
            let outcome = failure
            let placed = finished
            multi.queue.async { [self] in
                if let failure = outcome {
                    if !keepFinished(after: failure) { discard(DownloadFailure(error: failure)) }
                } else {
                    published(length: length, digest: digest, finished: placed)
                }
            }
        }
    }

    /// What the finished file's record says (see `FinishedRecord`): only for a file that takes
    /// a name, and only with its SHA-256 (not without a hash, nor with a metalink's SHA-512).
    func finishedRecord(length: Int64, digest: String?) -> FinishedRecord? {
        guard files.destinationName != nil, let digest, digest.utf8.count == 64, expected != nil || expectedSHA512 == nil,
              let url = URL(string: settings.request.url) else { return nil }
        return FinishedRecord(url: url, length: length, sha256: digest, etag: machine.etag, lastModified: machine.lastModified)
    }

    /// Something took the destination's name while the download ran (a file, a link): the
    /// bytes are whole and checked, so they stay beside it with a journal that says so, and the
    /// same download finishes at once when the name is free (or may be replaced). `false` when
    /// they cannot be kept that way.
    func keepFinished(after failure: HaulError) -> Bool {
        switch failure {
        case .destinationExists, .notARegularFile: break
        default: return false
        }
        guard files.isBesideDestination, let file, let data = makeResumeData(finished: true)?.encoded() else { return false }
        do throws(HaulError) {
            try journal.write(data, durable: true)
        } catch {
            return false
        }
        file.close()
        finish(.failure(DownloadFailure(error: failure)))
        return true
    }

    /// The file is in place: the journal goes, the result is reported.
    func published(length: Int64, digest: String?, finished: FinishedFile? = nil) {
        journal.remove()
        logger.debug("seams", metadata: ["checked": "\(seams.checked)", "mismatched": "\(seams.mismatched)"])
        finish(.success(DownloadResult(path: files.destinationPath ?? files.partPath, length: length,
                                       effectiveURL: effectiveURL, sha256: expected == nil && expectedSHA512 != nil ? nil : digest,
                                       checksumSource: digest == nil ? nil : expected?.source ?? (expectedSHA512 == nil ? nil : .metalink),
                                       seamsChecked: seams.checked, seamMismatches: seams.mismatched,
                                       badSources: badSources.map(sourceName),
                                       handedOver: files.destinationName == nil ? (files.root, files.partName) : nil,
                                       finished: finished)))
    }

    /// Ends with `failure`, removing the partial file and journal (only if this download opened,
    /// and so locked, the file: never another download's).
    func discard(_ failure: DownloadFailure) {
        if let file { dropPartialFile(file) }
        finish(.failure(failure))
    }

    /// Removes the partial file and the journal, or, when the partial file began as another
    /// program's (`adoptedPrefix`), gives that file back under its own name, cut to the bytes
    /// it held: what the user had is never lost, and nothing unchecked is left in its place.
    func dropPartialFile(_ file: DataFile) {
        defer { journal.remove() }
        if let prefix = adoptedPrefix, let destination = files.destinationName {
            do throws(HaulError) {
                try file.setLength(prefix)
                if settings.syncOnFinish { try file.syncData() }
                try files.root.publish(file, named: files.partName, to: destination, in: files.destinationRoot, replacing: false)
                file.close()
                logger.notice("the partial file is back as it was found",
                              metadata: ["path": "\(files.destinationPath ?? destination)", "bytes": "\(prefix)"])
                return
            } catch {
                // Something took its name meanwhile: it stays as the partial file, for the user.
                logger.warning("could not put the partial file back", metadata: ["path": "\(files.partPath)", "error": "\(error)"])
                file.close()
                return
            }
        }
        file.close()
        files.root.remove(files.partName)
    }

    /// Whether the partial file and journal stay after `error`: when something can carry the
    /// resume data to whoever continues the download.
    func keepsPartialFile(after error: HaulError) -> Bool {
        switch error {
        case .cancelled:
            return produceResumeDataOnCancel || files.isBesideDestination
        case .remoteFileChanged:
            // A resumed download told not to start over (`haul -c`): found from the answer's
            // head, before any of the new version was written, so the bytes and their journal
            // still describe the old one, for whoever decides to start over (another program's
            // file goes back as it was instead). With restarts on, it means a server that
            // contradicts itself: nothing of it is worth keeping.
            return !settings.engine.restartsOnRemoteChange && resumeFrom != nil && adoptedPrefix == nil
                && files.isBesideDestination
        case .inconsistentContent, .resumeDataInvalid, .invalidURL, .unsupportedRequest, .checksumMismatch, .badPiece,
             .invalidChecksum, .fileInUse, .sessionInvalidated, .notARegularFile, .destinationExists,
             .invalidFileName, .insufficientSpace:
            return false
        case .transport, .connectionClosedEarly, .httpStatus, .diskFull:
            // The public error (URLError userInfo, or HaulError.diskFull) carries the data.
            return true
        case .invalidContentRange, .rangeIgnored, .fileSystem:
            // Only a journal beside a destination can hand these on.
            return files.isBesideDestination
        }
    }

    /// Whether the public error for `error` hands resume data to the caller.
    static func errorCarriesResumeData(_ error: HaulError, producing: Bool) -> Bool {
        switch error {
        case .cancelled: return producing
        case .transport, .connectionClosedEarly, .httpStatus, .diskFull: return true
        default: return false
        }
    }

    func failed(_ error: HaulError) {
        let keep = keepsPartialFile(after: error)
        var blob: Data?
        if keep, machine.isResumable, let data = makeResumeData()?.encoded() {
            do throws(HaulError) {
                try journal.write(data, durable: true)
                blob = data
            } catch let journalError {
                logger.warning("could not write the journal", metadata: ["error": "\(journalError)"])
                // Keep the bytes only if the error itself carries the resume data to someone;
                // otherwise the journal was the only way back to them.
                blob = Self.errorCarriesResumeData(error, producing: produceResumeDataOnCancel) ? data : nil
            }
        }
        stopEverything()
        var keepsBytes = blob != nil
        // A full disk keeps what was written beside a destination even when the server makes
        // resuming impossible; in the temporary directory nobody could find it again.
        if case .diskFull = error, files.isBesideDestination { keepsBytes = true }
        if !keepsBytes {
            if let file { dropPartialFile(file) }
        } else {
            if let file { _ = try? file.syncData() }
            file?.close()
        }
        var failure = DownloadFailure(error: error, resumeData: blob)
        if keepsBytes, !files.isBesideDestination {
            failure.keptTempFile = (files.root, files.partName, files.journalName)
        }
        finish(.failure(failure))
    }


    func stopEverything() {
        endDescriptionFetch()
        writeback?.close()
        writeback = nil
        for (_, easy) in easies { multi.remove(easy) }
        easies.removeAll()
        for (_, stage) in stages { stage.release() }
        stages.removeAll()
        for (_, item) in retryTimers { item.cancel() }
        retryTimers.removeAll()
        deferredStarts.removeAll()
        progressTimer?.cancel()
        progressTimer = nil
        rateTimer?.cancel()
        rateTimer = nil
        deadline?.cancel()
        deadline = nil
    }

    func finish(_ result: Result<DownloadResult, DownloadFailure>) {
        guard let completion else { return }
        self.completion = nil
        // Directories made for a file that is not there: gone again, unless something is in them
        // (a partial file kept for resuming).
        if case .failure = result { MadeDirectory.removeIfEmpty(files.madeDirectories) }
        completion(result)
        // This may run inside a curl callback: the handles' removal waits for curl to return,
        // and their callbacks point at this object, so let go of it only after that.
        multi.queue.async { [self] in running = nil }
    }
}
