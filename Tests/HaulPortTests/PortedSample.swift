// URLSessionSample.swift.txt with only the renames of README's "Porting URLSession code" table
// applied (PortTests checks that). Do not edit by hand: change the sample, then apply the table.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul

// sample begins
final class DownloadController: NSObject, DownloadSessionDelegate, @unchecked Sendable {
    // Unchecked: `lock` guards the mutable state.
    private let lock = NSLock()
    private var _progress: Float = 0
    private var _resumeData: Data?
    private var _savedURL: URL?
    private var _failure: Error?
    private var _serverError = false
    private var _downloadTask: DownloadTask?
    let folder: URL
    let done = DispatchSemaphore(value: 0)
    private(set) var urlSession: DownloadSession!

    init(folder: URL) {
        self.folder = folder
        super.init()
        let configuration = DownloadSession.Configuration.default
        urlSession = DownloadSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }

    var progress: Float { lock.withLock { _progress } }
    var resumeData: Data? { lock.withLock { _resumeData } }
    var savedURL: URL? { lock.withLock { _savedURL } }
    var failure: Error? { lock.withLock { _failure } }
    var serverError: Bool { lock.withLock { _serverError } }
    var downloadTask: DownloadTask? { lock.withLock { _downloadTask } }

    func startDownload(url: URL) {
        let downloadTask = urlSession.downloadTask(with: url)
        lock.withLock { _downloadTask = downloadTask }
        downloadTask.resume()
    }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask, didWriteData bytesWritten: Int64,
                    totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64) {
        if downloadTask == self.downloadTask, totalBytesExpectedToWrite > 0 {
            let calculatedProgress = Float(totalBytesWritten) / Float(totalBytesExpectedToWrite)
            lock.withLock { _progress = calculatedProgress }
        }
    }

    func downloadSession(_ session: DownloadSession, downloadTask: DownloadTask,
                    didFinishDownloadingTo location: URL) {
        guard let httpResponse = downloadTask.response as? HTTPURLResponse,
              (200...299).contains(httpResponse.statusCode) else {
            lock.withLock { _serverError = true }
            return
        }
        do {
            let savedURL = folder.appendingPathComponent(downloadTask.originalRequest?.url?.lastPathComponent ?? "download")
            try? FileManager.default.removeItem(at: savedURL)
            try FileManager.default.moveItem(at: location, to: savedURL)
            lock.withLock { _savedURL = savedURL }
        } catch {
            lock.withLock { _failure = error }
        }
    }

    func downloadSession(_ session: DownloadSession, task: DownloadTask, didCompleteWithError error: Error?) {
        if let error {
            let userInfo = (error as NSError).userInfo
            let resumeData = userInfo[NSURLSessionDownloadTaskResumeData] as? Data
            lock.withLock {
                _failure = error
                _resumeData = resumeData
            }
        }
        done.signal()
    }

    /// Pauses: cancels, keeping what is needed to continue.
    func pause(then: @escaping @Sendable () -> Void) {
        downloadTask?.cancel(byProducingResumeData: { [self] resumeData in
            lock.withLock { _resumeData = resumeData }
            then()
        })
    }

    /// Continues from the resume data of a pause or a failure.
    func resumeDownload() {
        guard let resumeData else { return }
        let downloadTask = urlSession.downloadTask(withResumeData: resumeData)
        lock.withLock {
            _downloadTask = downloadTask
            _failure = nil
            _resumeData = nil
        }
        downloadTask.resume()
    }

    /// The same download with a completion handler on the shared session.
    static func fetch(_ url: URL, into folder: URL, completion: @escaping @Sendable (Result<URL, Error>) -> Void) {
        let task = DownloadSession.shared.downloadTask(with: url) { location, response, error in
            guard let location, let httpResponse = response as? HTTPURLResponse,
                  (200...299).contains(httpResponse.statusCode) else {
                completion(.failure(error ?? URLError(.badServerResponse)))
                return
            }
            let saved = folder.appendingPathComponent(url.lastPathComponent)
            do {
                try FileManager.default.moveItem(at: location, to: saved)
                completion(.success(saved))
            } catch {
                completion(.failure(error))
            }
        }
        task.resume()
    }

    /// The same download with async/await.
    static func fetch(_ url: URL, into folder: URL) async throws -> URL {
        let (location, response) = try await DownloadSession.shared.download(from: url)
        guard let httpResponse = response as? HTTPURLResponse, httpResponse.statusCode == 200 else {
            throw URLError(.badServerResponse)
        }
        let saved = folder.appendingPathComponent(url.lastPathComponent)
        try FileManager.default.moveItem(at: location, to: saved)
        return saved
    }
}
