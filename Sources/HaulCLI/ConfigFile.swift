import Foundation

/// `~/.config/haul/config` (or `$XDG_CONFIG_HOME/haul/config`): options for `haul get`, one
/// per line as long option names, with or without the leading `--`, a value after a space or
/// `=` (`connections 8`, `--max-tries=3`, `no-sync`); `#` starts a comment. They are read
/// before the command line's, so options typed there win; `--no-config` skips the file.
enum ConfigFile {
    /// Where the file is looked for.
    static var path: String {
        let environment = ProcessInfo.processInfo.environment
        if let base = environment["XDG_CONFIG_HOME"], base.hasPrefix("/") { return base + "/haul/config" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.config/haul/config"
    }

    /// `arguments` with the file's options in front of the `get` command's, and the file's
    /// path when it was used.
    static func apply(to arguments: [String], subcommands: [String]) -> ([String], String?) {
        guard !arguments.contains("--no-config") else { return (arguments, nil) }
        let first = arguments.first ?? ""
        let explicitGet = first == "get"
        // Another subcommand, or the root's own flags: no config.
        guard explicitGet || (!subcommands.contains(first) && !["-h", "--help", "--version", "help"].contains(first)
                              && !first.hasPrefix("--generate-completion") && !first.hasPrefix("--experimental")),
              let text = try? String(contentsOfFile: path, encoding: .utf8) else { return (arguments, nil) }
        let options = parse(text)
        guard !options.isEmpty else { return (arguments, nil) }
        let rest = explicitGet ? Array(arguments.dropFirst()) : arguments
        return (["get"] + options + rest, path)
    }

    /// The file's lines as command-line arguments.
    static func parse(_ text: String) -> [String] {
        var arguments: [String] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("--") { line.removeFirst(2) }
            let separator = line.firstIndex { $0 == "=" || $0 == " " || $0 == "\t" }
            guard let separator else {
                arguments.append("--" + line)
                continue
            }
            arguments.append("--" + line[..<separator])
            arguments.append(line[line.index(after: separator)...].trimmingCharacters(in: .whitespaces))
        }
        return arguments
    }
}
