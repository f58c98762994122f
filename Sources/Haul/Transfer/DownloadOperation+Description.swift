import CCurl
import Dispatch
import Foundation

/// A metalink the first response names (RFC 6249 §5, `Link: <…>; rel=describedby;
/// type="application/metalink4+xml"`): while it is fetched, and once adopted.
struct DescriptionState {
    /// The request fetching it, what it answered, and the body so far (bounded).
    var fetch: CurlEasy?
    var status = 0
    var body: [UInt8] = []
    var tooLarge = false
    var timeout: DispatchWorkItem?
    /// Sources that wrote bytes before it arrived: blamed for the pieces those bytes are in.
    var earlySources: UInt64 = 0
    /// The expected digest came from it.
    var providedDigest = false
    /// Its piece hashes are being checked.
    var providedPieces = false
}

/// Why a server-named metalink is not used (logged; the download goes on as a plain one).
struct DescriptionIgnored: Error {
    var reason: String
}

extension DownloadOperation {
    /// The largest metalink a server can make a download fetch.
    static let maximumDescriptionSize = 4 << 20
    /// How long fetching it may take before the download goes on without it.
    static let descriptionTimeout: Duration = .seconds(15)

    /// Starts fetching the metalink the probe's response names, unless switched off (the switch
    /// of Link mirrors), the download already has a metalink, or the response is not a success.
    /// It is untrusted input: fetched with the download's own request options (TLS, proxy)
    /// over http(s) only, bounded in size and time, credentials only to the URL's own origin.
    func fetchDescription(_ head: ResponseHead) {
        guard settings.usesLinkMirrors, settings.metalinkSize == nil, settings.pieces == nil,
              !settings.engine.identifiedByHashes, !settings.engine.singleStream, (200..<300).contains(head.status),
              description.fetch == nil,
              let url = LinkHeader.describedBy(in: head.fields, base: effectiveURL ?? primaryURL) else { return }
        var options = settings.request
        options.url = url
        options.method = "GET"
        options.body = nil
        options.followsRedirects = true
        if !Self.sameOrigin(url, primaryURL) { options.headers = options.headers.filter { !Self.isCredential($0) } }
        if let credential, Self.sameOrigin(credentialOrigin ?? "", url) { options.credential = credential }
        let easy = CurlEasy(options: options, range: nil, extraHeaders: [], multi: multi)
        let epoch = machine.plan.epoch
        easy.onHead = { [unowned self, unowned easy] head in
            if description.fetch === easy { description.status = head.status }
        }
        easy.onBody = { [unowned self, unowned easy] buffer in
            guard description.fetch === easy, (200..<300).contains(description.status) else { return 0 }
            guard description.body.count + buffer.count <= Self.maximumDescriptionSize else {
                description.tooLarge = true
                return 0
            }
            description.body.append(contentsOf: buffer)
            return buffer.count
        }
        easy.onDone = { [unowned self, unowned easy] code, message in
            guard description.fetch === easy else { return }
            let fetched = description
            endDescriptionFetch()
            guard machine.plan.epoch == epoch, !machine.isFinished else { return }
            var problem: String?
            if fetched.tooLarge {
                problem = "it is larger than \(Self.maximumDescriptionSize >> 20) MiB"
            } else if !(200..<300).contains(fetched.status) {
                problem = fetched.status == 0 ? message : "HTTP \(fetched.status)"
            } else if code != CURLE_OK {
                problem = message
            }
            descriptionArrived(fetched.body, url: url, problem: problem)
        }
        let timeout = DispatchWorkItem { [weak self] in
            guard let self, description.fetch === easy else { return }
            endDescriptionFetch()
            guard machine.plan.epoch == epoch, !machine.isFinished else { return }
            descriptionArrived([], url: url, problem: "it took longer than \(Int(Self.descriptionTimeout.secondsValue)) s")
        }
        description.fetch = easy
        description.timeout = timeout
        machine.awaitDescription()
        multi.queue.asyncAfter(deadline: .now() + Self.descriptionTimeout.dispatchInterval, execute: timeout)
        multi.add(easy)
    }

    /// Stops a fetch still running (the download ended or started over).
    func endDescriptionFetch() {
        if let easy = description.fetch { multi.remove(easy) }
        description.timeout?.cancel()
        description.fetch = nil
        description.timeout = nil
        description.body = []
    }

    /// The download started over: a metalink adopted for the old version is forgotten (the new
    /// first response may name one again).
    func forgetDescription() {
        endDescriptionFetch()
        if description.providedPieces {
            machine.pieces = nil
            pieceVerifier = nil
        }
        if description.providedDigest {
            if expected?.source == .metalink { expected = nil }
            if expectedSHA512 != nil, settings.expectedSHA512 == nil {
                expectedSHA512 = nil
                hasher?.reset(algorithm: .sha256)
            }
        }
        description = DescriptionState()
    }

    /// Adopts the fetched metalink, or logs why not and goes on without it; either way the
    /// machine splits what the probe has left and may finish.
    private func descriptionArrived(_ body: [UInt8], url: String, problem: String?) {
        let shown = URL(string: url)?.withoutCredentials.absoluteString ?? url
        var adopted: (sources: Int, ledger: PieceLedger?) = (0, nil)
        do throws(DescriptionIgnored) {
            if let problem { throw DescriptionIgnored(reason: problem) }
            let file = try describedFile(in: body)
            if let conflict = try digestConflict(file, shown: shown) {
                run(machine.diskFailed(.remoteFileChanged(reason: conflict)))
                return
            }
            adopted = adopt(file)
            logger.info("verifying with the metalink the server names (Link: rel=describedby)",
                        metadata: ["url": "\(shown)", "pieces": "\(file.pieces?.count ?? 0)", "mirrors": "\(adopted.sources)"])
        } catch {
            logger.warning("ignoring the metalink the server names; downloading without it",
                           metadata: ["url": "\(shown)", "reason": "\(error.reason)"])
        }
        run(machine.described(newSources: adopted.sources, pieces: adopted.ledger))
        verifyReadyPieces()
    }

    /// The metalink's file this download is: the one of the server's length (and, among
    /// several, the one named as the URL or the destination).
    private func describedFile(in body: [UInt8]) throws(DescriptionIgnored) -> Metalink.File {
        let metalink: Metalink
        do {
            metalink = try Metalink(data: Data(body))
        } catch {
            throw DescriptionIgnored(reason: "\(error)")
        }
        guard let length = machine.plan.length else {
            throw DescriptionIgnored(reason: "the server gave no length to match its files by")
        }
        let sized = metalink.files.filter { $0.size == length }
        guard !sized.isEmpty else {
            let sizes = metalink.files.prefix(8).map { $0.size.map(String.init) ?? "no size" }.joined(separator: ", ")
            throw DescriptionIgnored(reason: "the server's file is \(length) bytes; the metalink's are \(sizes)")
        }
        if sized.count == 1 { return sized[0] }
        let names = Set([URL(string: effectiveURL ?? primaryURL)?.lastPathComponent, files.destinationName].compactMap { $0 })
        let named = sized.filter { names.contains(MetalinkName.components(of: $0.name).last ?? "") }
        guard named.count == 1 else {
            throw DescriptionIgnored(reason: "several of its files are \(length) bytes and none is named as this one")
        }
        return named[0]
    }

    /// Why the metalink's SHA-256 cannot be used beside the digest already expected, or `nil`.
    /// The server's own digest and its metalink disagreeing is an error; a caller's digest wins
    /// over the metalink, which is then not used at all.
    private func digestConflict(_ file: Metalink.File, shown: String) throws(DescriptionIgnored) -> String? {
        guard let hash = file.strongHash, hash.algorithm == .sha256, let expected,
              expected.digest.bytes != hash.value else { return nil }
        if expected.source == .caller {
            throw DescriptionIgnored(reason: "its sha-256 \(hash.hex) is not the expected \(expected.digest.hex)")
        }
        return "its \(expected.source.rawValue) header says sha-256 \(expected.digest.hex), but the metalink it names "
            + "(\(shown)) says \(hash.hex)"
    }

    /// Takes the metalink's hashes and sources. Returns how many new sources joined, and the
    /// piece ledger (with the sources that wrote the bytes already on disk).
    private func adopt(_ file: Metalink.File) -> (sources: Int, ledger: PieceLedger?) {
        if let hash = file.strongHash, expected == nil, expectedSHA512 == nil {
            if hash.algorithm == .sha256, let digest = SHA256Digest(bytes: hash.value) {
                expected = (digest, .metalink)
                description.providedDigest = true
            } else if hash.algorithm == .sha512 {
                expectedSHA512 = hash.value
                description.providedDigest = true
                hasher?.reset(algorithm: .sha512)
            }
            startHashing()
        }
        var ledger: PieceLedger?
        if let pieces = file.pieces, let size = file.size, let dataFile = self.file {
            var made = PieceLedger(pieceLength: pieces.length, length: size)
            for range in machine.plan.doneRanges where !range.isEmpty {
                for source in 0..<64 where description.earlySources & (1 << UInt64(source)) != 0 {
                    made.wrote(offset: range.lowerBound, count: range.count, source: source)
                }
            }
            ledger = made
            pieceVerifier = PieceVerifier(descriptor: dataFile.reopenForReading(), pieces: pieces)
            description.providedPieces = true
        }
        let known = Set([settings.request.url, primaryURL, effectiveURL ?? ""] + mirrorURLs)
        var seen = Set<String>()
        let found = file.orderedSources().map(\.url.absoluteString)
            .filter { !known.contains($0) && seen.insert($0).inserted }.prefix(16)
        mirrorURLs += found
        return (found.count, ledger)
    }
}
