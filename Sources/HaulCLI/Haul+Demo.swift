import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Haul
import HaulTestServer

extension HaulCommand {
    /// `haul demo`: a first run on an embedded, throttled loopback server.
    struct Demo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the speedup of many connections on an embedded loopback server.",
            discussion: """
            Starts an HTTP server on 127.0.0.1 that limits every connection (as many real servers \
            and paths do), downloads the same generated file with one connection and with many, \
            checks its SHA-256, prints both speeds and removes everything it made.
            """
        )

        @Option(help: "Size of the generated file (e.g. 32M).")
        var size: ByteSize = ByteSize(bytes: 24 << 20)

        @Option(help: "Limit per connection on the demo server, per second (e.g. 4M).")
        var rate: ByteSize = ByteSize(bytes: 4 << 20)

        @Option(name: [.customShort("x"), .long], help: "Connections for the fast run.")
        var connections: Int = 16

        func validate() throws {
            guard size.bytes > 0, size.bytes <= 1 << 30 else { throw ValidationError("--size must be between 1 byte and 1G") }
            guard rate.bytes >= 64 << 10 else { throw ValidationError("--rate must be at least 64K") }
            guard (2...64).contains(connections) else { throw ValidationError("--connections must be between 2 and 64") }
        }

        func run() async throws {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: size.bytes, seed: UInt64.random(in: 1...UInt64.max))
            server.serve(ServedFile(content: content, etag: "\"demo\"", bytesPerSecond: Int(rate.bytes)), at: "/demo.bin")
            // A private scratch directory, made and emptied through the placement owner.
            let temporary = try PlacementRoot(directory: FileManager.default.temporaryDirectory.path)
            let scratchName = "haul-demo-\(UUID().uuidString)"
            let scratch = try temporary.makeDirectory(scratchName)
            let directory = URL(fileURLWithPath: scratch.location(of: ""), isDirectory: true)
            var made: [String] = []
            defer {
                for name in made {
                    try? DownloadSession.removePartialDownload(for: directory.appendingPathComponent(name))
                    scratch.remove(name)
                }
                temporary.removeDirectory(scratchName)
            }

            Console.line("haul demo: a \(Format.bytes(size.bytes)) file on a loopback server that allows "
                  + "\(Format.bytes(rate.bytes))/s per connection.")
            let reporter = Reporter(quiet: false, json: false)
            _ = ConsoleLogHandler.bootstrap(reporter: reporter, level: .warning)
            var results: [(connections: Int, seconds: Double, digest: String?)] = []
            for count in [1, connections] {
                var configuration = DownloadSession.Configuration()
                configuration.connectionsPerDownload = count
                configuration.adaptsConnectionCount = false
                configuration.minimumSplitSize = 256 << 10
                configuration.syncsBeforeMove = false
                let session = DownloadSession(configuration: configuration)
                let job = Job(url: server.url("/demo.bin"), output: directory.appendingPathComponent("demo-x\(count).bin"))
                made.append(job.output.lastPathComponent)
                let task = session.downloadTask(with: URLRequest(url: job.url), to: job.output)
                task.expectedSHA256 = content.sha256
                job.task = task
                Console.line("\(count == 1 ? "1 connection" : "\(count) connections"):")
                reporter.started(job)
                let ticker = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(100))
                        reporter.tick()
                    }
                }
                let events = task.events
                task.resume()
                do {
                    for try await _ in events {}
                } catch {
                    ticker.cancel()
                    reporter.failed(job, message: error.localizedDescription, status: ExitStatus(for: error))
                    await server.shutdown()
                    throw ExitStatus(for: error).code
                }
                ticker.cancel()
                reporter.dismiss(job)
                results.append((count, (ContinuousClock.now - job.started).seconds, task.sha256))
            }
            await server.shutdown()
            let slow = results[0]
            let fast = results[1]
            let speed = { (seconds: Double) in Format.bytes(Int64(Double(self.size.bytes) / seconds)) + "/s" }
            Console.line("")
            Console.line("  1 connection:    \(speed(slow.seconds))  (\(String(format: "%.2f", slow.seconds)) s)")
            Console.line("  \(fast.connections) connections: \(speed(fast.seconds))  (\(String(format: "%.2f", fast.seconds)) s)")
            Console.line("  speedup:         \(String(format: "%.1f", slow.seconds / fast.seconds))×")
            Console.line("  SHA-256 verified for both: \(fast.digest ?? "-")")
            Console.line(Self.nextSteps(invokedAs: CommandLine.arguments.first ?? "haul"))
        }

        /// What to run next, runnable as printed: the binary's own path when it was not found
        /// on PATH, and how to put it there.
        static func nextSteps(invokedAs argument: String) -> String {
            guard argument.contains("/") else { return "Next: `haul get URL -o FILE`, `haul --help`." }
            let binary = URL(fileURLWithPath: argument).standardizedFileURL.path
            return "Next: `\(binary) get URL -o FILE` (the binary is there), or `sudo make install` "
                + "to put `haul`, its completions and man page under /usr/local."
        }
    }
}
