import Foundation
import Haul

extension RPCService {
    /// `aria2.addMetalink(metalink, options, position)`: the metalink's files (base64 of a
    /// Metalink 4 document, as aria2 takes it) queued as downloads from their mirrors, each
    /// verified as `haul get FILE.meta4` verifies it: every piece against its `<pieces>` as it
    /// lands (a bad one fetched again from another mirror), the whole file against its SHA-256,
    /// else its SHA-512. Returns their GIDs in document order.
    ///
    /// A name may have directories: they are made inside the download directory (never through
    /// a link); names that would leave it (`../`, absolute) are refused by the parser. Every
    /// file is checked before any is queued: the whole call is refused if one cannot be placed.
    func addMetalink(_ encoded: String, options: [String: Any], position: Int?) throws(RPCError) -> [String] {
        guard encoded.utf8.count <= Metalink.maximumDocumentSize / 3 * 4 + 4,
              let data = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters) else {
            throw .invalidParams("addMetalink takes a base64-encoded Metalink 4 document")
        }
        let metalink: Metalink
        do {
            metalink = try Metalink(data: data)
        } catch {
            throw .invalidParams("\(error)")
        }
        guard metalink.files.count <= 64 else { throw .invalidParams("addMetalink takes at most 64 files at once") }
        for file in metalink.files { try downloads.checkPlacement(file.name) }
        let location = options["metalink-location"] as? String
        guard (location?.utf8.count ?? 0) <= 64 else { throw .invalidParams("metalink-location takes a country code") }
        var gids: [String] = []
        for (offset, file) in metalink.files.enumerated() {
            guard let one = metalink.selecting(fileNamed: file.name) else { continue }
            let uris = file.orderedSources(preferring: location).prefix(64).map(\.url.absoluteString)
            gids.append(try downloads.add(uris: uris, name: file.name, connections: try Options.connections(options),
                                          checksum: nil, headers: try Options.headers(options),
                                          position: position.map { $0 + offset }, paused: try Options.paused(options),
                                          speed: try Options.speed(options), minSplit: try Options.minimumSplit(options),
                                          allowOverwrite: try Options.allowOverwrite(options), metalink: one,
                                          metalinkLocation: location))
        }
        return gids
    }
}
