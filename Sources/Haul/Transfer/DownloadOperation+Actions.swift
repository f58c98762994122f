import CCurl
import Dispatch
import Foundation
import Logging

// Actions: what the state machine asks for, carried out on the transfer loop's queue.
extension DownloadOperation {
    func run(_ actions: [DownloadStateMachine.Action]) {
        for action in actions {
            logger.trace("action", metadata: ["action": "\(action)"])
            switch action {
            case .preallocate(let length):
                if let size = settings.metalinkSize, size != length {
                    run(machine.diskFailed(.remoteFileChanged(reason: "the server's file is \(length) bytes; the metalink says \(size)")))
                    return
                }
                do throws(HaulError) {
                    try preallocate(length)
                } catch {
                    run(machine.diskFailed(error))
                    return
                }
            case .start(let request):
                startOrDefer(request)
            case .cancel(let segment):
                if let easy = easies.removeValue(forKey: segment) { multi.remove(easy) }
                stages.removeValue(forKey: segment)?.release()
                deferredStarts.removeAll { $0.segment == segment }
            case .retry(let segment, let attempt, let retryAfter):
                scheduleRetry(segment: segment, attempt: attempt, retryAfter: retryAfter)
            case .connections(let target):
                logger.debug("connection count", metadata: ["target": "\(target)",
                                                            "measured": "\(machine.governor.lastSample.map { "\(Int($0.bytesPerSecond / 1_048_576)) MiB/s on \($0.count)" } ?? "-")"])
            case .unverifiable:
                if !warnedUnverifiable {
                    warnedUnverifiable = true
                    logger.debug("the server gives no strong ETag or Last-Modified: only seam checks can tell if the file changes")
                }
            case .badPiece(let index, let offset, let sources):
                let names = sources.map(sourceName)
                logger.warning("a piece failed its hash; fetching it again from another source",
                               metadata: ["piece": "\(index)", "offset": "\(offset)", "written by": "\(names.joined(separator: ", "))"])
                // A source is named only when the blame is its own: it wrote the bad piece alone,
                // or it was dropped for bad pieces. Another source that wrote part of a piece with
                // it is not accused.
                if sources.count == 1, let source = sources.first, !badSources.contains(source) { badSources.append(source) }
                // The whole-file hash may have read the bad bytes: it starts over from byte 0
                // (rare, and cheaper than holding it behind the piece checks every time).
                hasher?.reset()
            case .droppedMirror(let index, let reason):
                let url = index == 0 ? settings.request.url : mirrorURLs[index - 1]
                let shown = URL(string: url)?.withoutCredentials.absoluteString ?? "(source \(index))"
                logger.warning("dropping a source for this download", metadata: ["url": "\(shown)", "reason": "\(reason)"])
                if (machine.pieces?.badBySource[index] ?? 0) > 0, !badSources.contains(index) { badSources.append(index) }
            case .restarted(let reason):
                logger.warning("restarting from byte 0", metadata: ["reason": "\(reason)"])
                journalCursors.removeAll()
                syncedRanges.removeAll()
                seams.reset()
                segmentURL = nil
                sample = nil
                adoptedPrefix = nil
                hasher?.reset()
                if expected?.source != .caller, expected?.source != .metalink { expected = nil }
                forgetDescription()
                reportedResponse = false
                readServerDigest = false
                journal.remove()
                onRestart(reason)
            case .finish(let length):
                // Bytes kept for seams whose other side has landed now must match first (with
                // piece hashes, every piece is proven already).
                if let mismatch = resolveSeams(), machine.pieces == nil {
                    run(machine.contentMismatch(at: mismatch))
                    return
                }
                if machine.isFinished { complete(length: length) }
            case .fail(let error):
                failed(error)
            }
        }
    }

    /// Room for `length` bytes: refused at once when the file system does not have it (the
    /// server's claim is not believed into a full disk), then allocated.
    func preallocate(_ length: Int64) throws(HaulError) {
        guard let file else { return }
        let held = (try? file.identity().size) ?? 0
        if let free = files.root.freeBytes(), length - held > free {
            throw .insufficientSpace(path: files.displayPath, needed: length, available: free)
        }
        do throws(HaulError) {
            try file.preallocate(length)
        } catch {
            guard case .diskFull = error else { throw error }
            // Nothing of this length was written yet: give the space back and say why.
            try? file.setLength(held)
            throw .insufficientSpace(path: files.displayPath, needed: length, available: files.root.freeBytes() ?? 0)
        }
    }

    /// A resumed partial file must be the one the resume data describes: the same inode, at
    /// least as long, and with the recorded bytes still there.
    static func check(_ file: DataFile, against resume: ResumeData) throws(HaulError) {
        let now = try file.identity()
        guard now.device == resume.tempFile.device, now.inode == resume.tempFile.inode else {
            throw .resumeDataInvalid(reason: "the partial file \(file.path) was replaced by another file")
        }
        guard now.size >= resume.length else {
            throw .resumeDataInvalid(reason: "the partial file \(file.path) is shorter than recorded "
                + "(\(now.size) of \(resume.length) bytes)")
        }
        if let sample = resume.sample, file.sha256(offset: sample.offset, count: Int(sample.length)) != sample.sha256 {
            throw .resumeDataInvalid(reason: "the partial file \(file.path) was replaced (its bytes are not the ones recorded)")
        }
    }
}
