import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension Metalink {
    /// The document as Metalink 4 XML (UTF-8), every name, URL and attribute escaped.
    public func xmlData(generator: String = "Haul/\(Haul.version)") -> Data {
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<metalink xmlns=\"\(Self.namespace)\">\n"
        out += "  <generator>\(Self.escaped(generator))</generator>\n"
        for file in files {
            out += "  <file name=\"\(Self.escaped(file.name))\">\n"
            if let size = file.size { out += "    <size>\(size)</size>\n" }
            for hash in file.hashes {
                out += "    <hash type=\"\(Self.escaped(hash.type))\">\(hash.value.hexString)</hash>\n"
            }
            if let pieces = file.pieces {
                out += "    <pieces length=\"\(pieces.length)\" type=\"\(pieces.algorithm.rawValue)\">\n"
                for index in 0..<pieces.count {
                    out += "      <hash>\(pieces.digest(index).hexString)</hash>\n"
                }
                out += "    </pieces>\n"
            }
            for source in file.sources {
                var attributes = ""
                if let location = source.location { attributes += " location=\"\(Self.escaped(location))\"" }
                if let priority = source.priority { attributes += " priority=\"\(priority)\"" }
                out += "    <url\(attributes)>\(Self.escaped(source.url.absoluteString))</url>\n"
            }
            out += "  </file>\n"
        }
        out += "</metalink>\n"
        return Data(out.utf8)
    }

    /// `text` safe inside XML character data and double-quoted attributes.
    static func escaped(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // Control characters cannot appear in XML 1.0 at all; a checked name has none.
                if character.value < 0x20, character != "\t", character != "\n", character != "\r" { continue }
                out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// Describes the file at `path` for publishing: its size, SHA-256 and the SHA-256 of each
    /// `pieceLength`-byte piece, read once with a fixed buffer.
    /// - Parameters:
    ///   - name: the name the metalink gives it (checked like a parsed one).
    ///   - sources: where it will be served.
    package static func describe(fileAt path: String, name: String, pieceLength: Int64,
                                 sources: [Source]) throws(HaulError) -> File {
        guard pieceLength > 0 else { throw .unsupportedRequest(reason: "the piece length must be positive") }
        let fd = retryingInterrupts { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw DataFile.error("open", path, errno) }
        defer { _ = close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataFile.error("stat", path, errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: path) }
        let count = Pieces.expectedCount(size: Int64(info.st_size), length: pieceLength)
        guard count <= Int64(maximumPieces) else {
            throw .unsupportedRequest(reason: "\(count) pieces are more than \(maximumPieces); use a larger piece length")
        }
        var whole = EVPHash(.sha256)
        var piece = EVPHash(.sha256)
        var digests: [UInt8] = []
        digests.reserveCapacity(Int(count) * 32)
        var inPiece: Int64 = 0
        var total: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let read = retryingInterrupts { Glibc.read(fd, buffer.baseAddress, buffer.count) }
            if read < 0 { throw DataFile.error("read", path, errno) }
            if read == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<read])
            whole.update(chunk)
            var offset = 0
            while offset < read {
                let take = Int(min(Int64(read - offset), pieceLength - inPiece))
                piece.update(UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + take)]))
                offset += take
                inPiece += Int64(take)
                if inPiece == pieceLength {
                    digests += piece.digest()
                    piece.reset()
                    inPiece = 0
                }
            }
            total += Int64(read)
        }
        if inPiece > 0 { digests += piece.digest() }
        let file = File(name: name, size: total, hashes: [Hash(type: "sha-256", value: whole.digest())],
                        pieces: Pieces(algorithm: .sha256, length: pieceLength, digests: digests), sources: sources)
        do throws(MetalinkError) {
            try validate(file)
        } catch {
            throw .unsupportedRequest(reason: "\(error)")
        }
        return file
    }
}
