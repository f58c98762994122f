import ArgumentParser
import Haul

/// The `haul` command: segmented, parallel downloads.
@main
struct HaulCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "haul",
        abstract: "Segmented, parallel HTTP downloads with exact resume and SHA-256 verification.",
        version: Haul.version,
        subcommands: [Get.self, Bench.self, MetalinkCommand.self, Demo.self, Daemon.self, Add.self, Ls.self, Pause.self, Resume.self, Rm.self,
                      Wait.self]
    )
}
