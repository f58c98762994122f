import Foundation

extension DownloadOperation {
    /// The URL of source `index` (0 is the URL, others mirrors) as it may be shown.
    func sourceName(_ index: Int) -> String {
        let url = index == 0 ? settings.request.url
            : index <= mirrorURLs.count ? mirrorURLs[index - 1] : "(source \(index))"
        return URL(string: url)?.withoutCredentials.absoluteString ?? url
    }
}

extension DownloadOperation {
    /// Hands the pieces whose bytes are all on disk to the verifier (on the hash queue); each
    /// result comes back to the machine on the session queue, unless the file started over
    /// meanwhile.
    func verifyReadyPieces() {
        guard let pieceVerifier, !machine.isFinished else { return }
        let epoch = machine.plan.epoch
        for index in machine.piecesReady() {
            guard let range = machine.pieces?.range(of: index) else { continue }
            pieceVerifier.verify(index, range: range) { [weak self] matched in
                guard let self else { return }
                multi.queue.async { [self] in
                    guard machine.plan.epoch == epoch, !machine.isFinished else { return }
                    switch matched {
                    case true?: run(machine.piecePassed(index))
                    case false?: run(machine.pieceFailed(index))
                    case nil:
                        run(machine.diskFailed(.fileSystem(operation: "read back piece \(index) for hashing",
                                                           path: files.displayPath, errno: EIO)))
                    }
                }
            }
        }
    }
}

extension DownloadOperation {
    /// Mirrors the probe's response names (`Link: <…>; rel=duplicate; pri=N`, RFC 6249) join
    /// the download before it is split, unless switched off. They are other servers: they get
    /// no credential headers unless `sendsCredentialsToMirrors` (as every mirror). When the
    /// response carries an instance digest (`Repr-Digest`, `Digest`), the whole-file hash
    /// proves the result, so their own ETags and Last-Modified are not held to the first
    /// server's (real mirrors have their own); their bytes are still compared at every seam.
    /// Without one, they are held to the first server's validators.
    func addLinkedMirrors(_ head: ResponseHead) {
        guard settings.usesLinkMirrors, (200..<300).contains(head.status) else { return }
        let known = Set([settings.request.url, effectiveURL ?? ""] + mirrorURLs)
        let found = LinkHeader.duplicates(in: head.fields, base: effectiveURL ?? settings.request.url)
            .filter { !known.contains($0) }
        guard !found.isEmpty else { return }
        mirrorURLs += found
        machine.addSources(found.count, ownValidators: SHA256Digest.fromServer(head.fields) != nil)
        logger.info("the server names mirrors of the file (Link: rel=duplicate)",
                    metadata: ["mirrors": "\(found.compactMap { URL(string: $0)?.withoutCredentials.absoluteString }.joined(separator: ", "))"])
    }
}
