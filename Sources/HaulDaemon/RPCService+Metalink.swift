import Foundation
import Haul

extension RPCService {
    /// `aria2.addMetalink(metalink, options, position)`: the metalink's files (base64 of a
    /// Metalink 4 document, as aria2 takes it) queued as downloads from their mirrors, each
    /// checked against its SHA-256. Returns their GIDs in document order.
    ///
    /// Every file is checked before any is queued: the whole call is refused if one cannot be
    /// downloaded here (a name with directories, as the daemon's names are single components in
    /// its root; only a SHA-512, as the daemon checks SHA-256). Piece hashes are not used by the
    /// daemon: a file is verified whole, at the end.
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
        var planned: [(file: Metalink.File, checksum: String)] = []
        for file in metalink.files {
            guard PlacementRoot.isValidName(file.name), OutputName.sanitize(file.name) == file.name else {
                throw .invalidParams("the metalink's name '\(file.name)' is not a plain file name; the daemon puts "
                    + "each file directly in its download directory")
            }
            guard let hash = file.hashes.first(where: { $0.algorithm == .sha256 }) else {
                throw .invalidParams("the metalink gives '\(file.name)' no sha-256; the daemon verifies with SHA-256")
            }
            planned.append((file, "sha-256=\(hash.hex)"))
        }
        var gids: [String] = []
        for (offset, item) in planned.enumerated() {
            let uris = item.file.orderedSources(preferring: options["metalink-location"] as? String)
                .prefix(64).map(\.url.absoluteString)
            gids.append(try downloads.add(uris: uris, name: item.file.name, connections: try Options.connections(options),
                                          checksum: item.checksum, headers: try Options.headers(options),
                                          position: position.map { $0 + offset }, paused: try Options.paused(options),
                                          speed: try Options.speed(options), minSplit: try Options.minimumSplit(options),
                                          allowOverwrite: try Options.allowOverwrite(options)))
        }
        return gids
    }
}
