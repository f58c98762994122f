import ArgumentParser
import Foundation
import Haul
import HaulDaemon
#if canImport(Glibc)
import Glibc
#endif

extension HaulCommand {
    /// `haul daemon`: a durable download queue served over aria2's JSON-RPC.
    struct Daemon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "daemon",
            abstract: "Run a download queue that outlives its clients, driven over aria2's JSON-RPC.",
            discussion: """
            Listens on 127.0.0.1:6800 (POST /jsonrpc), so aria2 clients (aria2p, AriaNg, browser \
            extensions) work unchanged. Every call needs the secret as aria2's 'token:SECRET' \
            first parameter: made once and kept (0600) in the state directory, or given with \
            --secret. Downloads are written only inside --dir; the queue is saved (and synced) \
            before every answer, so a killed daemon starts again with every download where it was.
            """
        )

        @Option(name: [.customShort("d"), .long], help: "The download directory; nothing is written elsewhere.")
        var dir: String = "."

        @Option(help: "Where to listen, HOST:PORT (default 127.0.0.1:6800).")
        var listen: String = "127.0.0.1:6800"

        @Option(name: [.customLong("secret"), .customLong("rpc-secret")], help: "The RPC secret (default: kept in the state directory).")
        var secret: String?

        @Option(help: "Where the queue and secret are kept (default $XDG_STATE_HOME/haul).")
        var stateDir: String?

        @Option(name: [.customShort("j"), .long], help: "Downloads at once.")
        var maxConcurrentDownloads: Int = 5

        @Option(help: "A browser origin allowed to call (repeat for several).")
        var allowOrigin: [String] = []

        @Flag(help: "Run in the background (its log goes to daemon.log in the state directory).")
        var detach = false

        @OptionGroup var transfer: TransferOptions

        func validate() throws {
            guard listen.split(separator: ":").count >= 2, Int(listen.split(separator: ":").last ?? "") != nil else {
                throw ValidationError("--listen takes HOST:PORT, got '\(listen)'")
            }
            guard maxConcurrentDownloads >= 1 else { throw ValidationError("--max-concurrent-downloads must be at least 1") }
            if let secret, secret.count < 8 { throw ValidationError("--secret must be at least 8 characters") }
            if let stateDir {
                guard !stateDir.isEmpty else { throw ValidationError("--state-dir is empty; give a directory") }
                var info = stat()
                if lstat(stateDir, &info) == 0, info.st_mode & S_IFMT != S_IFDIR {
                    throw ValidationError("--state-dir '\(stateDir)' is not a directory (a file, a link or a device); "
                                          + "give a directory, or a path where one can be made")
                }
            }
        }

        func run() async throws {
            if detach { return try runDetached() }
            let root = URL(fileURLWithPath: dir).standardizedFileURL
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                FileHandle.standardError.write(Data("haul: the download directory \(root.path) does not exist\n".utf8))
                throw ExitStatus.usage.code
            }
            var settings = HaulDaemon.Daemon.Settings(root: root)
            let parts = listen.split(separator: ":")
            settings.host = parts.dropLast().joined(separator: ":").trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            settings.port = Int(parts.last!)!
            settings.secret = secret
            settings.stateDirectory = absoluteStateDir
            settings.maxConcurrentDownloads = maxConcurrentDownloads
            settings.allowedOrigins = Set(allowOrigin)
            settings.downloads = transfer.configuration()
            let stop = AsyncStream<Void>.makeStream()
            let daemon = try await HaulDaemon.Daemon.start(settings, onShutdown: { stop.continuation.finish() })
            Console.line("haul daemon: \(root.path) on http://\(settings.host):\(daemon.port)/jsonrpc")
            let interruption = Interruption { stop.continuation.finish() }
            for await _ in stop.stream {}
            _ = interruption
            await daemon.stop()
        }
    }
}

extension HaulCommand.Daemon {
    /// `--state-dir` as an absolute path: a relative one is taken from the current directory.
    var absoluteStateDir: String? {
        stateDir.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
    }

    /// Starts the same command without `--detach` in a new session (no terminal), its output
    /// appended to `daemon.log` in the state directory; `aria2.shutdown` (or SIGTERM) stops it.
    func runDetached() throws {
        guard let state = StateDirectory.open(absoluteStateDir) else {
            FileHandle.standardError.write(Data("haul: no state directory: set XDG_STATE_HOME or HOME, or give --state-dir\n".utf8))
            throw ExitStatus.usage.code
        }
        let log: Int32
        do {
            log = try state.openLog("daemon.log")
        } catch {
            FileHandle.standardError.write(Data("haul: \(error)\n".utf8))
            throw ExitStatus.diskError.code
        }
        let process = Process()
        let setsid = "/usr/bin/setsid"
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let arguments = Array(CommandLine.arguments.dropFirst()).filter { $0 != "--detach" }
        if FileManager.default.isExecutableFile(atPath: setsid) {
            process.executableURL = URL(fileURLWithPath: setsid)
            process.arguments = [me] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: me)
            process.arguments = arguments
        }
        let handle = FileHandle(fileDescriptor: log, closeOnDealloc: true)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        Console.line("haul daemon: started in the background (pid \(process.processIdentifier)); log: \(state.location(of: "daemon.log"))")
    }
}

