import ArgumentParser
import Foundation
import Logging

/// How much `haul` logs: `-v` (info), `-vv` (debug), or `--log-level`.
struct LoggingOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Say more: the sources and connections used, each retry and why, resume decisions (-vv: debug, seam checks).")
    var verbose: Int

    @Option(help: ArgumentHelp("How much to log (default: warning; -v info, -vv debug).",
                               valueName: "level"))
    var logLevel: Logger.Level?

    @Option(help: ArgumentHelp("Seconds between progress lines when the output is not a terminal (on standard error, as wget).",
                               valueName: "seconds"))
    var progressInterval: Double = 5

    func validate() throws {
        guard progressInterval > 0 else { throw ValidationError("--progress-interval must be positive") }
    }

    /// The level asked for; warnings (a dropped source, a restart) show by default.
    var level: Logger.Level {
        if let logLevel { return logLevel }
        switch verbose {
        case 0: return .warning
        case 1: return .info
        default: return .debug
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The command's own log format: `haul: message (key: value, …)` lines on standard error,
/// warnings and errors marked, no timestamps; JSON objects (also on standard error) with
/// `--json`; nothing with `-q`. Lines go through the reporter so they never tear its progress
/// block.
struct ConsoleLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    let reporter: Reporter

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        reporter.log(level: event.level, message: event.message.description, metadata: all.mapValues { "\($0)" })
    }

    /// Routes every logger of the process (the library's included) to `reporter` at `level`,
    /// and returns the one the session takes. Called once per process.
    static func bootstrap(reporter: Reporter, level: Logger.Level) -> Logger {
        LoggingSystem.bootstrap { _ in ConsoleLogHandler(logLevel: level, reporter: reporter) }
        return Logger(label: "haul")
    }
}
