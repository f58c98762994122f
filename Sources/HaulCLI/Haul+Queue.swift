import ArgumentParser
import Foundation

/// Options every client of the daemon shares.
struct DaemonLocation: ParsableArguments {
    @Option(help: "The daemon's state directory (default $XDG_STATE_HOME/haul).")
    var stateDir: String?

    func client() throws -> DaemonClient {
        do {
            return try DaemonClient.local(stateDirectory: stateDir)
        } catch {
            FileHandle.standardError.write(Data("haul: \(error)\n".utf8))
            throw ExitStatus.usage.code
        }
    }
}

/// Runs `body`, turning a client error into a message and the network exit status.
private func reporting<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as ClientError {
        FileHandle.standardError.write(Data("haul: \(error)\n".utf8))
        throw ExitStatus.networkError.code
    }
}

extension HaulCommand {
    /// `haul add URL…`: queue downloads in the daemon.
    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Queue downloads in the running haul daemon; prints their GIDs.")

        @Argument(help: "http or https URLs (each its own download).")
        var urls: [String]

        @Option(name: .shortAndLong, help: "The file name in the daemon's directory (one URL only).")
        var output: String?

        @Option(name: .customLong("sha256"), help: "The file's expected SHA-256 (64 hex digits).")
        var sha256: String?

        @Option(help: "Another URL of the same file (repeat for several; one URL only).")
        var mirror: [String] = []

        @Option(name: [.customShort("x"), .long], help: "Connections for the download.")
        var connections: Int?

        @OptionGroup var location: DaemonLocation

        func validate() throws {
            guard !urls.isEmpty else { throw ValidationError("give at least one URL") }
            if urls.count > 1, output != nil || sha256 != nil || !mirror.isEmpty {
                throw ValidationError("-o, --sha256 and --mirror are for one URL")
            }
        }

        func run() async throws {
            let client = try location.client()
            try await reporting {
                for url in urls {
                    var options: [String: String] = [:]
                    if let output { options["out"] = output }
                    if let sha256 { options["checksum"] = "sha-256=\(sha256)" }
                    if let connections { options["split"] = "\(connections)" }
                    let gid = try await client.call("aria2.addUri", [[url] + mirror, options]) as? String
                    Console.line(gid ?? "")
                }
            }
        }
    }

    /// `haul ls`: the daemon's downloads.
    struct Ls: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the running haul daemon's downloads.")

        @Flag(help: "One JSON object per download.")
        var json = false

        @OptionGroup var location: DaemonLocation

        func run() async throws {
            let client = try location.client()
            try await reporting {
                var all: [[String: Any]] = []
                for (method, params) in [("aria2.tellActive", [Any]()), ("aria2.tellWaiting", [0, 1000]), ("aria2.tellStopped", [0, 1000])] {
                    all += (try await client.call(method, params) as? [[String: Any]]) ?? []
                }
                if json {
                    for item in all {
                        let data = try JSONSerialization.data(withJSONObject: item, options: [.sortedKeys])
                        Console.line(String(decoding: data, as: UTF8.self))
                    }
                    return
                }
                Console.line("GID               STATE     PROGRESS  SPEED       ETA       NAME")
                for item in all {
                    let total = Double(item["totalLength"] as? String ?? "0") ?? 0
                    let done = Double(item["completedLength"] as? String ?? "0") ?? 0
                    let percent = total > 0 ? String(format: "%5.1f%%", done * 100 / total) : "    -"
                    let rate = Int64(item["downloadSpeed"] as? String ?? "0") ?? 0
                    let speed = Format.bytes(rate) + "/s"
                    let eta = rate > 0 && total > done ? Format.duration((total - done) / Double(rate)) : "-"
                    let files = item["files"] as? [[String: Any]]
                    let name = (files?.first?["path"] as? String).map { URL(fileURLWithPath: $0).lastPathComponent } ?? ""
                    let state = item["status"] as? String ?? ""
                    Console.line("\(item["gid"] as? String ?? "")  \(state.padding(toLength: 8, withPad: " ", startingAt: 0))  "
                        + "\(percent.padding(toLength: 8, withPad: " ", startingAt: 0))  "
                        + "\(speed.padding(toLength: 10, withPad: " ", startingAt: 0))  "
                        + "\(eta.padding(toLength: 8, withPad: " ", startingAt: 0))  \(name)")
                }
            }
        }
    }

    /// What `haul pause|resume|rm GID…` share: one call per GID.
    enum Control {
        static func run(_ method: String, gids: [String], location: DaemonLocation) async throws {
            let client = try location.client()
            try await reporting {
                for gid in gids { _ = try await client.call(method, [gid]) }
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pause downloads in the daemon (they keep their bytes).")
        @Argument(help: "GIDs from haul add or haul ls.") var gids: [String]
        @OptionGroup var location: DaemonLocation
        func run() async throws { try await Control.run("aria2.pause", gids: gids, location: location) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resume paused downloads in the daemon.")
        @Argument(help: "GIDs from haul add or haul ls.") var gids: [String]
        @OptionGroup var location: DaemonLocation
        func run() async throws { try await Control.run("aria2.unpause", gids: gids, location: location) }
    }

    struct Rm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove downloads from the daemon (a partial file is deleted).")
        @Argument(help: "GIDs from haul add or haul ls.") var gids: [String]
        @OptionGroup var location: DaemonLocation
        func run() async throws { try await Control.run("aria2.remove", gids: gids, location: location) }
    }

    /// `haul wait GID…`: until they stop; the exit status is the first failure's.
    struct Wait: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Wait for downloads in the daemon; exits as haul get would.")
        @Argument(help: "GIDs from haul add or haul ls.") var gids: [String]
        @OptionGroup var location: DaemonLocation

        func run() async throws {
            let client = try location.client()
            var worst = ExitStatus.success
            try await reporting {
                for gid in gids {
                    while true {
                        let status = try await client.call("aria2.tellStatus", [gid, ["status", "errorCode", "errorMessage"]]) as? [String: Any]
                        let state = status?["status"] as? String ?? ""
                        if state == "complete" { break }
                        if state == "error" || state == "removed" {
                            let code = ExitStatus(aria2Code: status?["errorCode"] as? String ?? "1", removed: state == "removed")
                            FileHandle.standardError.write(Data("haul: \(gid): \(status?["errorMessage"] as? String ?? state)\n".utf8))
                            if worst == .success { worst = code }
                            break
                        }
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
            }
            if worst != .success { throw worst.code }
        }
    }
}

extension ExitStatus {
    /// `haul get`'s exit status for an aria2 error code from the daemon.
    init(aria2Code code: String, removed: Bool) {
        if removed { self = .interrupted; return }
        switch code {
        case "3", "24": self = .httpError
        case "32": self = .checksumMismatch
        case "9", "13", "16": self = .diskError
        default: self = .networkError
        }
    }
}
