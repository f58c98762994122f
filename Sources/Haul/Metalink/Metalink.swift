import Foundation

/// A Metalink 4 document (RFC 5854): files, each with its size, hashes, piece hashes and the
/// URLs (mirrors) that serve it.
///
/// Made from the bytes of a `.meta4` file with `init(data:)`, which refuses anything it could
/// not use safely: names that would leave the output directory, hashes that are not hex,
/// piece lists that do not fit the size, files with no SHA-256 or SHA-512. Hand one to
/// `DownloadSession.downloadTask(with:)` or `download(metalink:to:)`.
public struct Metalink: Sendable, Equatable {
    /// One hash of a whole file, as listed (weak and unknown types are recorded, never trusted alone).
    public struct Hash: Sendable, Equatable {
        /// The metalink's name for the function (`sha-256`, `sha-512`, `md5`, …), lowercased.
        public var type: String
        /// The digest bytes.
        public var value: [UInt8]
        /// The function when Haul can check it (SHA-256, SHA-512), else `nil`.
        public var algorithm: HashAlgorithm? { HashAlgorithm(rawValue: type) }
        /// The digest as lowercase hex.
        public var hex: String { value.hexString }

        /// A hash of `type` with digest bytes `value`.
        public init(type: String, value: [UInt8]) {
            self.type = type.lowercased()
            self.value = value
        }
    }

    /// The hashes of consecutive pieces of a file: piece `i` is bytes `i*length ..< (i+1)*length`
    /// (the last one shorter).
    public struct Pieces: Sendable, Equatable {
        /// The hash function of every piece.
        public var algorithm: HashAlgorithm
        /// The length of every piece but the last, in bytes.
        public var length: Int64
        /// The digests, one after another (`count * algorithm.digestLength` bytes).
        public var digests: [UInt8]

        /// How many pieces there are.
        public var count: Int { digests.count / algorithm.digestLength }

        /// The digest of piece `index`.
        public func digest(_ index: Int) -> ArraySlice<UInt8> {
            let size = algorithm.digestLength
            return digests[(index * size)..<((index + 1) * size)]
        }

        /// Pieces from `digests` (concatenated) of `length`-byte pieces.
        public init(algorithm: HashAlgorithm, length: Int64, digests: [UInt8]) {
            self.algorithm = algorithm
            self.length = length
            self.digests = digests
        }

        /// The number of pieces a file of `size` bytes has.
        static func expectedCount(size: Int64, length: Int64) -> Int64 {
            size == 0 ? 0 : (size - 1) / length + 1
        }
    }

    /// A URL serving a file, with the publisher's preference.
    public struct Source: Sendable, Equatable {
        /// An http or https URL.
        public var url: URL
        /// 1 is the most preferred; `nil` when not given (least preferred).
        public var priority: Int?
        /// An ISO 3166-1 alpha-2 country code where the mirror is (lowercased), if given.
        public var location: String?

        /// A source at `url`.
        public init(url: URL, priority: Int? = nil, location: String? = nil) {
            self.url = url
            self.priority = priority
            self.location = location?.lowercased()
        }
    }

    /// One file of the metalink.
    public struct File: Sendable, Equatable {
        /// A relative path (`/` between components) that stays inside the output directory.
        public var name: String
        /// The length in bytes, when given.
        public var size: Int64?
        /// Every hash listed for the whole file.
        public var hashes: [Hash]
        /// Piece hashes (SHA-256 or SHA-512), when given.
        public var pieces: Pieces?
        /// The http and https URLs, in document order.
        public var sources: [Source]

        /// A file description; `Metalink(files:)` checks it.
        public init(name: String, size: Int64? = nil, hashes: [Hash] = [], pieces: Pieces? = nil, sources: [Source]) {
            self.name = name
            self.size = size
            self.hashes = hashes
            self.pieces = pieces
            self.sources = sources
        }

        /// The whole-file hash to verify with: SHA-256 when listed, else SHA-512.
        public var strongHash: Hash? {
            hashes.first { $0.algorithm == .sha256 } ?? hashes.first { $0.algorithm == .sha512 }
        }

        /// The sources in the order to try them: those at `location` first (a country code,
        /// case-insensitive), then by priority (1 first, none last), then as listed.
        public func orderedSources(preferring location: String? = nil) -> [Source] {
            let wanted = location?.lowercased()
            return sources.enumerated().sorted { a, b in
                let aHere = wanted != nil && a.element.location == wanted
                let bHere = wanted != nil && b.element.location == wanted
                if aHere != bHere { return aHere }
                let aPriority = a.element.priority ?? Int.max
                let bPriority = b.element.priority ?? Int.max
                if aPriority != bPriority { return aPriority < bPriority }
                return a.offset < b.offset
            }.map(\.element)
        }
    }

    /// The files, in document order.
    public var files: [File]

    /// The largest document read.
    public static let maximumDocumentSize = 64 << 20
    /// The most piece hashes accepted for one file (bounds memory: 32 MiB of SHA-512 digests).
    public static let maximumPieces = 1 << 19
    /// The most files, and the most URLs per file, accepted.
    public static let maximumFiles = 4096
    public static let maximumSourcesPerFile = 1024

    /// A metalink of `files`, checked as a parsed one is.
    public init(files: [File]) throws(MetalinkError) {
        guard !files.isEmpty else { throw .noFiles }
        var names = Set<String>()
        for file in files {
            try Self.validate(file)
            guard names.insert(file.name).inserted else { throw .duplicateName(file.name) }
        }
        self.files = files
    }

    /// A metalink with only the file named `name`, or `nil` when it has none.
    public func selecting(fileNamed name: String) -> Metalink? {
        files.first { $0.name == name }.map { Metalink(unchecked: [$0]) }
    }

    /// Checks what a file description promises: a safe name, digests of the right length, a
    /// strong hash, pieces that fit the size, at least one http(s) URL.
    static func validate(_ file: File) throws(MetalinkError) {
        try MetalinkName.check(file.name)
        if let size = file.size, size < 0 { throw .invalidSize(file: file.name, text: String(size)) }
        for hash in file.hashes {
            if let algorithm = hash.algorithm, hash.value.count != algorithm.digestLength {
                throw .invalidHash(file: file.name, type: hash.type,
                                   reason: "\(hash.value.count * 2) hex digits, expected \(algorithm.digestLength * 2)")
            }
        }
        guard file.strongHash != nil else { throw .noStrongHash(file: file.name, types: file.hashes.map(\.type)) }
        if let pieces = file.pieces {
            guard pieces.length > 0 else { throw .invalidPieces(file: file.name, reason: "the piece length must be positive") }
            guard let size = file.size else {
                throw .invalidPieces(file: file.name, reason: "pieces need the file's <size>")
            }
            guard pieces.digests.count % pieces.algorithm.digestLength == 0 else {
                throw .invalidHash(file: file.name, type: pieces.algorithm.rawValue, reason: "a piece digest has the wrong length")
            }
            let expected = Pieces.expectedCount(size: size, length: pieces.length)
            guard expected <= Int64(maximumPieces) else { throw .tooMany(what: "pieces", limit: maximumPieces) }
            guard expected == Int64(pieces.count) else {
                throw .pieceCountMismatch(file: file.name, expected: expected, found: pieces.count)
            }
        }
        guard !file.sources.isEmpty else { throw .noUsableURL(file: file.name) }
        guard file.sources.count <= maximumSourcesPerFile else { throw .tooMany(what: "URLs for one file", limit: maximumSourcesPerFile) }
        for source in file.sources {
            guard let scheme = source.url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                  source.url.host != nil else { throw .invalidURL(file: file.name, text: source.url.absoluteString) }
        }
    }
}
