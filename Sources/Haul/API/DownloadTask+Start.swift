import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Starting a task: its operation (here, or in the daemon for a background session) and the
/// checks of resume data before anything runs.
extension DownloadTask {
    func start() {
        lock.withLock { if startedAt == nil { startedAt = Date() } }
        guard session.register(self) else {
            session.multi.queue.async { self.finished(.failure(DownloadFailure(error: .sessionInvalidated))) }
            return
        }
        let operation: any DownloadRunner
        let resume: ResumeData?
        do throws(HaulError) {
            (operation, resume) = try makeOperation()
        } catch {
            session.multi.queue.async { self.finished(.failure(DownloadFailure(error: error))) }
            return
        }
        let fallbackURL = resume?.url ?? originalRequest?.url
        operation.setCompletion { [self] result in finished(result) }
        operation.onResponse = { [self] head, effective in
            received(head, url: effective.flatMap(URL.init(string:)) ?? fallbackURL ?? URL(fileURLWithPath: "/"))
        }
        operation.onRestart = { [self] _ in restarted() }
        operation.onReceivedAll = { [self] in lock.withLock { _onReceivedAll }?() }
        if let local = operation as? DownloadOperation { wireQuestions(local) }
        lock.withLock { self.operation = operation }
        if let resume {
            let trusted = resume.trustedRanges(currentBootID: currentBootID())
            let done = trusted.reduce(0) { $0 + $1.count64 }
            // As URLSession's `fileOffset`: the bytes on disk that will not be fetched again,
            // told when the server's answer has let them stand (the first progress, or the end).
            lock.withLock {
                _received = done
                _expected = resume.length
                _pendingResume = (done, resume.length)
            }
            progress.totalUnitCount = resume.length
            progress.completedUnitCount = done
        }
        operation.start()
        session.multi.queue.async { self.startTicker() }
    }

    /// The operation for a new download, or for resume data after checking it and its file.
    func makeOperation() throws(HaulError) -> (any DownloadRunner, ResumeData?) {
        var expected: SHA256Digest?
        if let text = expectedSHA256 {
            guard let digest = SHA256Digest(expected: text) else { throw .invalidChecksum(text) }
            expected = digest
        }
        if let identifier = session.configuration.identifier {
            guard metalink == nil else {
                // The daemon would get the URLs without the metalink's hashes: refuse rather than
                // download unverified.
                throw .unsupportedRequest(reason: "a background session cannot take a metalink; download it in this "
                    + "process, or hand it to the daemon with aria2.addMetalink")
            }
            return (try backgroundOperation(identifier: identifier, expected: expected), nil)
        }
        guard let resumeData else {
            guard let request = originalRequest else { throw .invalidURL("(no URL)") }
            let settings = try operationSettings(for: request, expected: expected)
            var files = try metalinkFiles(resume: nil)
            if files == nil {
                files = try session.files(for: destination, task: taskIdentifier, replacing: replacesExistingFileOverride)
            }
            return (DownloadOperation(multi: session.multi, settings: settings, files: files!, logger: session.logger,
                                      syscalls: session.syscalls), nil)
        }
        let resume = try ResumeData(resumeData)
        var resolved = try metalinkFiles(resume: resume)
        if resolved == nil {
            resolved = try session.files(for: destination, task: taskIdentifier, resume: resume,
                                         replacing: replacesExistingFileOverride)
        }
        let files = resolved!
        try Self.checkPartialFile(of: resume, files: files)
        var request = URLRequest(url: resume.url)
        for header in resume.headers { request.addValue(header[1], forHTTPHeaderField: header[0]) }
        lock.withLock { _currentRequest = request }
        let settings = try operationSettings(for: request, expected: expected)
        return (DownloadOperation(multi: session.multi, settings: settings, files: files, resume: resume,
                                  logger: session.logger, syscalls: session.syscalls), resume)
    }

    /// `timeoutIntervalForResource` bounds the whole task: a start after waiting for
    /// connectivity gets what is left of it (at least a moment, for one last try).
    func limitToResourceTimeLeft(_ settings: inout DownloadOperation.Settings) {
        guard let limit = settings.maxDuration, let began = lock.withLock({ startedAt }) else { return }
        let left = limit - .milliseconds(Int64(-began.timeIntervalSinceNow * 1000))
        settings.maxDuration = max(left, .milliseconds(100))
    }

    /// The daemon's per-download settings, where it gave them.
    func applyOverrides(to settings: inout DownloadOperation.Settings) {
        if let connections = connectionsOverride { settings.engine.connections = max(1, connections) }
        if let split = minimumSplitOverride, split > 0 {
            settings.engine.minimumSplit = split
            settings.engine.endgameMinimumTail = max(1, split / 8)
        }
    }

    /// The session's settings for `request` with this task's own: overrides, the time left,
    /// the expected digest, mirrors and metalink (the same for a new and a resumed download).
    func operationSettings(for request: URLRequest, expected: SHA256Digest?) throws(HaulError) -> DownloadOperation.Settings {
        var settings = try session.settings(for: request, rateLimit: maximumBytesPerSecond)
        applyOverrides(to: &settings)
        limitToResourceTimeLeft(&settings)
        settings.expectedSHA256 = expected
        try applyMirrors(to: &settings)
        applyMetalink(to: &settings)
        return settings
    }

    func applyMirrors(to settings: inout DownloadOperation.Settings) throws(HaulError) {
        let mirrors = self.mirrors
        if settings.engine.singleStream, !mirrors.isEmpty {
            throw .unsupportedRequest(reason: "mirrors for a request that is not a GET (it is sent once, to one server)")
        }
        for mirror in mirrors {
            guard let scheme = mirror.scheme?.lowercased(), scheme == "http" || scheme == "https", mirror.host != nil else {
                throw .invalidURL(mirror.absoluteString)
            }
        }
        // The URL itself, or a mirror named twice, is one source, not two.
        var seen: Set<String> = [settings.request.url]
        let distinct = mirrors.map(\.absoluteString).filter { seen.insert($0).inserted }
        settings.mirrorURLs = distinct
        settings.engine.mirrors = 1 + distinct.count
    }

    /// For a background session: the download queued in (or, for an attached task, followed in)
    /// the daemon.
    func backgroundOperation(identifier: String, expected: SHA256Digest?) throws(HaulError) -> RemoteDownload {
        guard completionHandler == nil else {
            throw .unsupportedRequest(reason: "background sessions deliver through a delegate; completion handlers are not supported")
        }
        guard let endpoint = DaemonEndpoint.find(stateDirectory: session.configuration.daemonStateDirectory) else {
            throw .unsupportedRequest(reason: "no haul daemon is running for background session '\(identifier)'; "
                + "start one with: haul daemon --dir DIR")
        }
        let connection = DaemonConnection(endpoint: endpoint)
        if let gid = attachedGID { return RemoteDownload(connection: connection, queue: session.multi.queue, gid: gid) }
        let session = self.session
        guard resumeData == nil, destination == nil, let url = originalRequest?.url else {
            throw .unsupportedRequest(reason: "background tasks download a URL into the daemon's directory "
                + "(no destination or resume data)")
        }
        var options = ["haul-session": identifier]
        if let description = taskDescription { options["haul-description"] = description }
        if let expected { options["checksum"] = "sha-256=\(expected.hex)" }
        let headers = (originalRequest?.allHTTPHeaderFields ?? [:])
            .filter { !["range", "if-range"].contains($0.key.lowercased()) }
            .sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        let remote = RemoteDownload(connection: connection, queue: session.multi.queue,
                                    uris: [url.absoluteString] + mirrors.map(\.absoluteString), options: options,
                                    headers: headers)
        remote.onGID = { [unowned self] gid in session.registerBackground(gid, task: self) }
        return remote
    }

    /// The partial file must be there, be the same file, and be as long as recorded; it is
    /// opened in its directory without following links, as the download will open it.
    static func checkPartialFile(of resume: ResumeData, files: DownloadOperation.Files) throws(HaulError) {
        do throws(HaulError) {
            let file = try files.root.openExisting(files.partName, displayPath: files.displayPath)
            defer { file.close() }
            try DownloadOperation.check(file, against: resume)
        } catch {
            switch error {
            case .fileSystem(_, _, let code) where code == ENOENT:
                // A temp file's journal is nothing without it: gone too, not left in the
                // temporary directory (one beside a destination stays: it may tell that the
                // file was already put in place).
                if !files.isBesideDestination { Journal(root: files.root, name: files.journalName).remove() }
                throw .resumeDataInvalid(reason: "the partial file \(files.partPath) is missing")
            case .resumeDataInvalid, .fileInUse:
                throw error
            default:
                throw .resumeDataInvalid(reason: "the partial file cannot be used: \(error)")
            }
        }
    }
}
