import Foundation

extension ResumeData {
    /// The largest blob accepted: far above any real one, small enough that a hostile input
    /// cannot make the decoder allocate much.
    static let maximumEncodedSize = 4 << 20

    private static let magic = "haul-resume"

    /// The JSON payload, keys in a fixed order so the checksum is stable.
    private struct Payload: Codable {
        var url: String
        var finalURL: String?
        var method: String
        var headers: [[String]]
        var etag: String?
        var lastModified: String?
        var length: Int64
        var tempFile: FileIdentity
        var sample: Sample?
        var doneRanges: [[Int64]]
        var syncedRanges: [[Int64]]
        var bootID: String?
        var destination: String?
        var expectedSHA256: String?
        // The server's instance digest (optional: older blobs have none).
        var serverSHA256: String?
        var serverDigestHeader: String?
        // Metalink downloads (optional: older blobs have none of these).
        var mirrors: [String]?
        var pieceLength: Int64?
        /// Half-open ranges of verified piece indices.
        var verifiedPieces: [[Int]]?
        // How many bytes at the start were another program's file (optional: most blobs have none).
        var adoptedPrefix: Int64?
    }

    /// Encodes the blob:
    ///
    ///     haul-resume 1
    ///     {"bootID":…,"doneRanges":[[0,1048576]],…}
    ///     sha256 <hex of the JSON line>
    public func encoded() -> Data {
        let payload = Payload(
            url: url.absoluteString, finalURL: finalURL?.absoluteString, method: method, headers: headers,
            etag: etag, lastModified: lastModified, length: length, tempFile: tempFile, sample: sample,
            doneRanges: doneRanges.map { [$0.lowerBound, $0.upperBound] },
            syncedRanges: syncedRanges.map { [$0.lowerBound, $0.upperBound] },
            bootID: bootID, destination: destination, expectedSHA256: expectedSHA256,
            serverSHA256: serverSHA256, serverDigestHeader: serverDigestHeader?.rawValue,
            mirrors: mirrors.isEmpty ? nil : mirrors.map(\.absoluteString), pieceLength: pieceLength,
            verifiedPieces: verifiedPieces.isEmpty ? nil : Self.runs(of: verifiedPieces), adoptedPrefix: adoptedPrefix)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings and integers cannot fail.
        let json = (try? encoder.encode(payload)) ?? Data("{}".utf8)
        var hash = SHA256()
        hash.update(json)
        var out = Data("\(Self.magic) \(Self.formatVersion)\n".utf8)
        out.append(json)
        out.append(Data("\nsha256 \(hash.finalizeHex())\n".utf8))
        return out
    }

    /// Decodes and checks a blob. Every problem is a `HaulError.resumeDataInvalid` saying what is
    /// wrong; nothing here can crash on hostile input.
    public init(_ data: Data) throws(HaulError) {
        func invalid(_ reason: String) -> HaulError { .resumeDataInvalid(reason: reason) }
        guard !data.isEmpty else { throw invalid("it is empty") }
        guard data.count <= Self.maximumEncodedSize else { throw invalid("it is too large (\(data.count) bytes)") }
        let bytes = [UInt8](data)
        guard let firstNewline = bytes.firstIndex(of: 0x0A) else { throw invalid("it is truncated (no header line)") }
        let header = String(decoding: bytes[..<firstNewline], as: UTF8.self)
        let headerParts = header.split(separator: " ")
        guard headerParts.count == 2, headerParts[0] == Self.magic else {
            throw invalid("it is not Haul resume data")
        }
        guard let version = Int(headerParts[1]), version >= 1 else { throw invalid("its version '\(headerParts[1])' is not valid") }
        guard version <= Self.formatVersion else {
            throw invalid("it was written by a newer Haul (format \(version); this one reads up to \(Self.formatVersion))")
        }
        var end = bytes.count
        guard end > firstNewline + 1, bytes[end - 1] == 0x0A else { throw invalid("it is truncated (no checksum line)") }
        end -= 1
        guard let lastNewline = bytes[(firstNewline + 1)..<end].lastIndex(of: 0x0A) else {
            throw invalid("it is truncated (no checksum line)")
        }
        let checksumLine = String(decoding: bytes[(lastNewline + 1)..<end], as: UTF8.self)
        let json = Data(bytes[(firstNewline + 1)..<lastNewline])
        guard checksumLine.hasPrefix("sha256 "), checksumLine.count == 7 + 64 else {
            throw invalid("it is truncated or corrupt (bad checksum line)")
        }
        var hash = SHA256()
        hash.update(json)
        guard hash.finalizeHex() == checksumLine.dropFirst(7) else {
            throw invalid("it is corrupt (checksum mismatch)")
        }
        let payload: Payload
        do {
            payload = try JSONDecoder().decode(Payload.self, from: json)
        } catch {
            throw invalid("it is corrupt (fields missing or of the wrong type)")
        }
        try self.init(validating: payload, invalid: invalid)
    }

    private init(validating payload: Payload, invalid: (String) -> HaulError) throws(HaulError) {
        guard let url = URL(string: payload.url), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https" else { throw invalid("its URL is not an http(s) URL") }
        guard payload.method == "GET" else { throw invalid("its method \(payload.method) is not GET") }
        guard payload.length >= 0 else { throw invalid("its length is negative") }
        guard payload.headers.allSatisfy({ $0.count == 2 }) else { throw invalid("its headers are malformed") }
        guard payload.tempFile.path.hasPrefix("/") else { throw invalid("its temp file path is not absolute") }
        let done = try Self.ranges(payload.doneRanges, length: payload.length, name: "done", invalid: invalid)
        let synced = try Self.ranges(payload.syncedRanges, length: payload.length, name: "synced", invalid: invalid)
        for range in synced where !done.contains(where: { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound }) {
            throw invalid("a synced range \(range.lowerBound)-\(range.upperBound) is not among the done ranges")
        }
        if let sample = payload.sample {
            guard sample.offset >= 0, sample.length > 0, sample.length <= 1 << 20, sample.sha256.count == 64,
                  done.contains(where: { $0.lowerBound <= sample.offset && sample.offset + sample.length <= $0.upperBound })
            else { throw invalid("its sample of the partial file is malformed") }
        }
        if let digest = payload.expectedSHA256, !Self.isHexDigest(digest) {
            throw invalid("its expected SHA-256 is not 64 hex digits")
        }
        var serverDigestHeader: ChecksumSource?
        if payload.serverSHA256 != nil || payload.serverDigestHeader != nil {
            guard let digest = payload.serverSHA256, Self.isHexDigest(digest),
                  let header = payload.serverDigestHeader.flatMap(ChecksumSource.init(rawValue:)),
                  header == .reprDigest || header == .digest else {
                throw invalid("its server digest is malformed")
            }
            serverDigestHeader = header
        }
        var mirrors: [URL] = []
        for text in payload.mirrors ?? [] {
            guard let mirror = URL(string: text), let scheme = mirror.scheme?.lowercased(),
                  scheme == "http" || scheme == "https" else { throw invalid("a mirror is not an http(s) URL") }
            mirrors.append(mirror)
        }
        var verified: [Int] = []
        if let pieceLength = payload.pieceLength {
            guard pieceLength > 0 else { throw invalid("its piece length is not positive") }
            let count = payload.length == 0 ? 0 : (payload.length - 1) / pieceLength + 1
            for run in payload.verifiedPieces ?? [] {
                guard run.count == 2, run[0] >= 0, run[0] < run[1], Int64(run[1]) <= count,
                      verified.last.map({ $0 < run[0] }) ?? true else {
                    throw invalid("its verified pieces are malformed")
                }
                verified.append(contentsOf: run[0]..<run[1])
            }
        } else if payload.verifiedPieces != nil {
            throw invalid("it lists verified pieces without a piece length")
        }
        if let prefix = payload.adoptedPrefix {
            guard prefix > 0, prefix <= payload.length else { throw invalid("its adopted prefix \(prefix) is outside the file") }
        }
        self.adoptedPrefix = payload.adoptedPrefix
        self.mirrors = mirrors
        self.pieceLength = payload.pieceLength
        self.verifiedPieces = verified
        self.url = url
        self.finalURL = payload.finalURL.flatMap(URL.init(string:))
        self.method = payload.method
        self.headers = payload.headers
        self.etag = payload.etag
        self.lastModified = payload.lastModified
        self.length = payload.length
        self.tempFile = payload.tempFile
        self.sample = payload.sample
        self.doneRanges = done
        self.syncedRanges = synced
        self.bootID = payload.bootID
        self.destination = payload.destination
        self.expectedSHA256 = payload.expectedSHA256
        self.serverSHA256 = serverDigestHeader == nil ? nil : payload.serverSHA256
        self.serverDigestHeader = serverDigestHeader
    }

    /// 64 lowercase hex digits.
    private static func isHexDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Sorted indices as half-open runs: `[1, 2, 3, 7]` is `[[1, 4], [7, 8]]`.
    static func runs(of indices: [Int]) -> [[Int]] {
        var runs: [[Int]] = []
        for index in indices {
            if let last = runs.last, last[1] == index {
                runs[runs.count - 1][1] = index + 1
            } else {
                runs.append([index, index + 1])
            }
        }
        return runs
    }

    /// Ranges must be pairs, non-empty, inside the length, sorted and apart (merged).
    private static func ranges(_ pairs: [[Int64]], length: Int64, name: String,
                               invalid: (String) -> HaulError) throws(HaulError) -> [Range<Int64>] {
        var result: [Range<Int64>] = []
        result.reserveCapacity(pairs.count)
        for pair in pairs {
            guard pair.count == 2, pair[0] >= 0, pair[0] < pair[1] else {
                throw invalid("a \(name) range \(pair) is malformed")
            }
            guard pair[1] <= length else { throw invalid("a \(name) range ends at \(pair[1]), past the length \(length)") }
            if let last = result.last, pair[0] <= last.upperBound {
                throw invalid("the \(name) ranges overlap or are out of order at \(pair[0])")
            }
            result.append(pair[0]..<pair[1])
        }
        return result
    }

    /// Memberwise initializer for the engine.
    init(url: URL, finalURL: URL?, headers: [[String]], etag: String?, lastModified: String?, length: Int64,
         tempFile: FileIdentity, sample: Sample? = nil, doneRanges: [Range<Int64>], syncedRanges: [Range<Int64>],
         bootID: String?, destination: String?, expectedSHA256: String?, mirrors: [URL] = [], pieceLength: Int64? = nil,
         verifiedPieces: [Int] = []) {
        self.mirrors = mirrors
        self.pieceLength = pieceLength
        self.verifiedPieces = verifiedPieces
        self.sample = sample
        self.url = url
        self.finalURL = finalURL
        self.method = "GET"
        self.headers = headers
        self.etag = etag
        self.lastModified = lastModified
        self.length = length
        self.tempFile = tempFile
        self.doneRanges = doneRanges
        self.syncedRanges = syncedRanges
        self.bootID = bootID
        self.destination = destination
        self.expectedSHA256 = expectedSHA256
    }
}
