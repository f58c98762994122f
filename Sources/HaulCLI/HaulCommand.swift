import ArgumentParser
import CHaulSystem
import Foundation
import Haul

/// The `haul` command: segmented, parallel downloads.
@main
struct HaulCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "haul",
        abstract: "Segmented, parallel HTTP downloads with exact resume and SHA-256 verification.",
        version: Haul.version,
        subcommands: [Get.self, Bench.self, MetalinkCommand.self, Demo.self, Daemon.self, Add.self, Ls.self, Pause.self, Resume.self, Rm.self,
                      Wait.self],
        // `haul URL…` is `haul get URL…`, as with curl and wget.
        defaultSubcommand: Get.self
    )

    /// Parses the arguments with the config file's options in front of them (see `ConfigFile`),
    /// then runs the command.
    static func main() async {
        // One arena: a download allocates little, from whichever threads Dispatch picks, and
        // every extra arena keeps its own high-water mark resident (about 4 MiB over a 1 GiB
        // download on a server that limits each connection).
        chaul_limit_malloc_arenas(1)
        let given = Array(CommandLine.arguments.dropFirst())
        let (arguments, file) = ConfigFile.apply(to: given, subcommands: configuration.subcommands.map {
            $0.configuration.commandName ?? ""
        })
        do {
            var command = try parseAsRoot(arguments)
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            if let file, !(error is ExitCode) {
                FileHandle.standardError.write(Data("haul: options from \(file) were read first; --no-config leaves them out\n".utf8))
            }
            exit(withError: error)
        }
    }
}
