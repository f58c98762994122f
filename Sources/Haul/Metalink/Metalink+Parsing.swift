import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

extension Metalink {
    /// The Metalink 4 namespace (RFC 5854 §4).
    static let namespace = "urn:ietf:params:xml:ns:metalink"

    /// Parses and checks a Metalink 4 document.
    ///
    /// The XML is read with Foundation's `XMLParser` with namespaces on and external entities
    /// off; a document that declares a DTD or entities is refused before parsing, so nothing is
    /// expanded or fetched. Memory is bounded: the document (`maximumDocumentSize`), the files,
    /// URLs and piece hashes each have a limit that stops the parser as soon as it is passed.
    /// Unknown elements (extensions, `<metaurl>`, `<signature>`) are ignored; URLs other than
    /// http and https are skipped.
    /// - Throws: `MetalinkError` saying what is wrong.
    public init(data: Data) throws(MetalinkError) {
        guard data.count <= Self.maximumDocumentSize else {
            throw .tooLarge(bytes: data.count, limit: Self.maximumDocumentSize)
        }
        // A metalink never needs a document type declaration; refusing one outright keeps entity
        // expansion (billion laughs) and external entities out whatever the XML library does.
        if data.range(of: Data("<!DOCTYPE".utf8)) != nil || data.range(of: Data("<!ENTITY".utf8)) != nil {
            throw .documentTypeDeclared
        }
        let reader = MetalinkReader()
        let parser = XMLParser(data: data)
        parser.shouldProcessNamespaces = true
        parser.shouldReportNamespacePrefixes = false
        parser.shouldResolveExternalEntities = false
        parser.delegate = reader
        let ok = parser.parse()
        if let failure = reader.failure { throw failure }
        guard ok else {
            let reason = parser.parserError.map { ($0 as NSError).localizedDescription } ?? "parse error"
            throw .malformedXML(line: parser.lineNumber, reason: reason)
        }
        guard reader.sawRoot else { throw .notMetalink(reason: "there is no <metalink> element") }
        try self.init(files: reader.files)
    }
}

/// The `XMLParser` delegate that collects a metalink's files; it stops the parser at the first
/// problem and keeps it in `failure`.
private final class MetalinkReader: NSObject, XMLParserDelegate {
    var files: [Metalink.File] = []
    var failure: MetalinkError?
    var sawRoot = false

    private var file: Metalink.File?
    private var piecesType: String?
    private var piecesLength: String?
    private var pieceDigests: [UInt8] = []
    private var pieceCount = 0
    private var inPieces = false
    private var hashType: String?
    private var url: (priority: String?, location: String?)?
    private var text = ""
    private var collecting = false
    private var depth = 0
    private var skippedSources = 0

    /// The longest text of one element (a URL, a hash) that is read.
    private static let maximumText = 8 << 10

    private func stop(_ parser: XMLParser, _ error: MetalinkError) {
        if failure == nil { failure = error }
        parser.abortParsing()
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes: [String: String] = [:]) {
        guard failure == nil else { return }
        depth += 1
        if depth == 1 {
            guard elementName == "metalink" else {
                return stop(parser, .notMetalink(reason: "the root element is <\(elementName)>"))
            }
            guard namespaceURI == Metalink.namespace else {
                let reason = namespaceURI == "http://www.metalinker.org/"
                    ? "it is Metalink 3; only Metalink 4 is supported"
                    : "its namespace is '\(namespaceURI ?? "none")'"
                return stop(parser, .notMetalink(reason: reason))
            }
            sawRoot = true
            return
        }
        guard namespaceURI == Metalink.namespace else { return }
        switch elementName {
        case "file" where depth == 2:
            guard files.count < Metalink.maximumFiles else {
                return stop(parser, .tooMany(what: "files", limit: Metalink.maximumFiles))
            }
            guard let name = attributes["name"] else {
                return stop(parser, .unsafeName("", reason: "the <file> has no name attribute"))
            }
            file = Metalink.File(name: name, sources: [])
            skippedSources = 0
        case "size" where depth == 3 && file != nil:
            begin()
        case "hash" where depth == 3 && file != nil:
            hashType = (attributes["type"] ?? "").lowercased()
            begin()
        case "pieces" where depth == 3 && file != nil:
            inPieces = true
            piecesType = (attributes["type"] ?? "").lowercased()
            piecesLength = attributes["length"]
            pieceDigests = []
            pieceCount = 0
        case "hash" where depth == 4 && inPieces:
            pieceCount += 1
            guard pieceCount <= Metalink.maximumPieces else {
                return stop(parser, .tooMany(what: "pieces", limit: Metalink.maximumPieces))
            }
            begin()
        case "url" where depth == 3 && file != nil:
            guard (file?.sources.count ?? 0) + skippedSources < Metalink.maximumSourcesPerFile else {
                return stop(parser, .tooMany(what: "URLs for one file", limit: Metalink.maximumSourcesPerFile))
            }
            url = (attributes["priority"], attributes["location"])
            begin()
        default:
            break
        }
    }

    private func begin() {
        text = ""
        collecting = true
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard collecting, failure == nil else { return }
        guard text.utf8.count + string.utf8.count <= Self.maximumText else {
            return stop(parser, .tooMany(what: "characters in one element", limit: Self.maximumText))
        }
        text += string
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        defer { depth -= 1 }
        guard failure == nil, namespaceURI == Metalink.namespace else { return }
        let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let wasCollecting = collecting
        collecting = false
        guard var current = file else { return }
        let name = current.name
        switch elementName {
        case "size" where depth == 3 && wasCollecting:
            guard let size = Int64(value), size >= 0 else { return stop(parser, .invalidSize(file: name, text: value)) }
            current.size = size
        case "hash" where depth == 3 && wasCollecting:
            let type = hashType ?? ""
            guard let bytes = bytes(fromHex: value), !bytes.isEmpty else {
                return stop(parser, .invalidHash(file: name, type: type.isEmpty ? "untyped" : type, reason: "'\(MetalinkError.printable(value))' is not hexadecimal"))
            }
            guard current.hashes.count < 64 else { return stop(parser, .tooMany(what: "hashes for one file", limit: 64)) }
            current.hashes.append(.init(type: type, value: bytes))
        case "hash" where depth == 4 && inPieces && wasCollecting:
            let algorithm = HashAlgorithm(rawValue: piecesType ?? "")
            // Pieces of a type Haul cannot check are skipped (the whole-file hash still is).
            guard let algorithm else { break }
            guard let bytes = bytes(fromHex: value), bytes.count == algorithm.digestLength else {
                return stop(parser, .invalidHash(file: name, type: algorithm.rawValue,
                                                 reason: "piece \(pieceCount - 1) is '\(MetalinkError.printable(value))'"))
            }
            pieceDigests.append(contentsOf: bytes)
        case "pieces" where depth == 3 && inPieces:
            inPieces = false
            guard let algorithm = HashAlgorithm(rawValue: piecesType ?? "") else { break }
            // The first set of pieces Haul can check is used.
            guard current.pieces == nil else { break }
            guard let text = piecesLength, let length = Int64(text), length > 0 else {
                return stop(parser, .invalidPieces(file: name, reason: "length '\(MetalinkError.printable(piecesLength ?? ""))' is not a positive integer"))
            }
            current.pieces = .init(algorithm: algorithm, length: length, digests: pieceDigests)
            pieceDigests = []
        case "url" where depth == 3 && wasCollecting:
            let attributes = url
            url = nil
            guard let parsed = URL(string: value), let scheme = parsed.scheme?.lowercased() else {
                return stop(parser, .invalidURL(file: name, text: value))
            }
            guard scheme == "http" || scheme == "https" else {
                skippedSources += 1
                break
            }
            guard parsed.host != nil else { return stop(parser, .invalidURL(file: name, text: value)) }
            var priority: Int?
            if let text = attributes?.priority {
                guard let number = Int(text), (1...999_999).contains(number) else {
                    return stop(parser, .invalidURL(file: name, text: "\(value) (priority '\(text)')"))
                }
                priority = number
            }
            var location: String?
            if let text = attributes?.location {
                guard text.count == 2, text.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic && $0.isASCII }) else {
                    return stop(parser, .invalidURL(file: name, text: "\(value) (location '\(text)')"))
                }
                location = text
            }
            current.sources.append(.init(url: parsed, priority: priority, location: location))
        case "file" where depth == 2:
            files.append(current)
            file = nil
            return
        default:
            return
        }
        file = current
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
        // Every error counts, also the ones libxml2 recovers from (a mismatched end tag).
        stop(parser, .malformedXML(line: parser.lineNumber, reason: (parseError as NSError).localizedDescription))
    }

    func parser(_ parser: XMLParser, foundInternalEntityDeclarationWithName name: String, value: String?) {
        stop(parser, .documentTypeDeclared)
    }

    func parser(_ parser: XMLParser, foundExternalEntityDeclarationWithName name: String, publicID: String?, systemID: String?) {
        stop(parser, .documentTypeDeclared)
    }

    func parser(_ parser: XMLParser, resolveExternalEntityName name: String, systemID: String?) -> Data? {
        stop(parser, .documentTypeDeclared)
        return nil
    }
}
