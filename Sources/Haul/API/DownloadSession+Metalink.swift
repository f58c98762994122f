import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension DownloadSession {
    /// A task that downloads the metalink's first file from its URLs: the most preferred one
    /// (by `priority`) is the URL, the others its mirrors. The file must have the metalink's
    /// SHA-256 (else SHA-512), and with `<pieces>` every piece is checked as it lands (a bad
    /// one is fetched again from another source). The file reaches the delegate at a temporary
    /// location, as with `downloadTask(with:)`.
    public func downloadTask(with metalink: Metalink) -> DownloadTask {
        downloadTask(with: metalink, inDirectory: nil, preferringLocation: nil)
    }

    /// A task that downloads the metalink's first file into `directory` under the metalink's
    /// name (its subdirectories made inside `directory`, never through a symbolic link), with
    /// the mirrors at `location` (a country code such as `de`) tried first.
    public func downloadTask(with metalink: Metalink, inDirectory directory: URL?,
                             preferringLocation location: String? = nil) -> DownloadTask {
        makeMetalinkTask(metalink, directory: directory, location: location, resumeData: nil)
    }

    /// Downloads the metalink's first file into `directory` (see `downloadTask(with:inDirectory:)`)
    /// and returns where it is and the response of its first source.
    /// - Throws: `HaulError.checksumMismatch` when the whole file does not have the metalink's
    ///   digest (nothing is left at the destination), and what `download(from:to:)` throws.
    public func download(metalink: Metalink, to directory: URL,
                         preferringLocation location: String? = nil) async throws -> (URL, HTTPURLResponse) {
        try await http(run(downloadTask(with: metalink, inDirectory: directory, preferringLocation: location)))
    }

    /// A metalink task continuing from `resumeData` (the journal beside its file).
    package func downloadTask(with metalink: Metalink, inDirectory directory: URL, preferringLocation location: String?,
                              resumeData: Data) -> DownloadTask {
        makeMetalinkTask(metalink, directory: directory, location: location, resumeData: resumeData)
    }

    private func makeMetalinkTask(_ metalink: Metalink, directory: URL?, location: String?,
                                  resumeData: Data?) -> DownloadTask {
        let file = metalink.files[0]
        let sources = file.orderedSources(preferring: location).map(\.url)
        let destination = directory.map { $0.appendingPathComponent(file.name) }
        let task = makeTask(request: resumeData == nil ? URLRequest(url: sources[0]) : nil, resumeData: resumeData,
                            destination: destination, completionHandler: nil)
        task.mirrors = Array(sources.dropFirst())
        task.metalink = MetalinkRequest(file: file, directory: directory)
        return task
    }
}
