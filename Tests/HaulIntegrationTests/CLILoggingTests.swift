import Foundation
import Haul
import HaulTestServer
import Logging
import Synchronization
import Testing

/// Keeps every record a session logs.
private struct CollectingLogHandler: LogHandler {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    let records: Mutex<[Record]>.Reference
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let record = Record(level: event.level, message: event.message.description,
                            metadata: (event.metadata ?? [:]).mapValues { "\($0)" })
        records.value.withLock { $0.append(record) }
    }
}

extension Mutex where Value: Sendable {
    /// A shared box around a mutex (a `Mutex` itself cannot be copied into a handler).
    final class Reference: Sendable {
        let value: Mutex<Value>
        init(_ initial: sending Value) { value = Mutex(initial) }
    }
}

extension Integration {
    @Suite("haul's log: -v, --log-level, -q, --json, and the library's Logger")
    struct CLILoggingTests {
        /// A file (at /flaky0.bin, /flaky1.bin, /flaky2.bin) whose second segment is answered 503 once.
        private func flakyServer(seed: UInt64) async throws -> (TestServer, GeneratedContent) {
            let server = try await TestServer.start()
            let content = GeneratedContent(size: 4 << 20, seed: seed)
            // Faults count per file: each run gets its own path.
            for run in 0..<3 {
                server.serve(ServedFile(content: content, etag: "\"v1\"",
                                        faults: [Fault(.status(503, retryAfter: 0), times: 1, minimumOffset: 1 << 20)]),
                             at: "/flaky\(run).bin")
            }
            return (server, content)
        }

        @Test("The library logs each retry with its reason through the configuration's Logger")
        func libraryLogger() async throws {
            let (server, content) = try await flakyServer(seed: 81)
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let records = Mutex<[CollectingLogHandler.Record]>.Reference([])
            var configuration = DownloadSession.Configuration()
            configuration.connectionsPerDownload = 4
            configuration.adaptsConnectionCount = false  // segments, even from a fast loopback server
            configuration.syncsBeforeMove = false
            configuration.logger = Logger(label: "test") { _ in CollectingLogHandler(records: records) }
            let session = DownloadSession(configuration: configuration)
            _ = try await session.download(from: server.url("/flaky0.bin"), to: scratch.file("out"))
            #expect(try SHA256.hex(ofFileAt: scratch.file("out").path) == content.sha256)
            let retries = records.value.withLock { $0 }.filter { $0.message == "retrying a segment" }
            #expect(retries.contains { $0.metadata["reason"]?.contains("HTTP 503") == true }, "\(retries)")
        }

        @Test("-v shows retries and why on stderr as short haul: lines; stdout carries no log; default shows none")
        func verbose() async throws {
            let (server, content) = try await flakyServer(seed: 82)
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/flaky0.bin").absoluteString
            let loud = try runHaul(["get", url, "-o", scratch.file("a").path, "-x", "4", "--fixed", "-v"])
            #expect(loud.status == 0, "stderr: \(loud.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("a").path) == content.sha256)
            let lines = loud.stderr.split(separator: "\n")
            #expect(lines.contains { $0.hasPrefix("haul: retrying a segment") && $0.contains("reason: HTTP 503") },
                    "stderr: \(loud.stderr)")
            #expect(lines.contains { $0.hasPrefix("haul: downloading") && $0.contains("connections: up to 4") })
            #expect(lines.allSatisfy { $0.hasPrefix("haul: ") }, "stderr: \(loud.stderr)")
            #expect(!loud.stdout.contains("retrying") && !loud.stdout.contains("downloading"))

            let plain = try runHaul(["get", server.url("/flaky1.bin").absoluteString, "-o", scratch.file("b").path, "-x", "4", "--fixed"])
            #expect(plain.status == 0)
            #expect(!plain.stderr.contains("retrying"), "stderr: \(plain.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("b").path) == content.sha256)

            let debug = try runHaul(["get", server.url("/flaky2.bin").absoluteString, "-o", scratch.file("c").path, "-x", "4", "--fixed", "--log-level", "debug"])
            #expect(debug.status == 0)
            #expect(debug.stderr.contains("haul: debug: seams"), "stderr: \(debug.stderr)")
        }

        @Test("-q with -v prints nothing at all; --json log records are JSON objects on stderr")
        func quietAndJSON() async throws {
            let (server, content) = try await flakyServer(seed: 83)
            defer { Task { await server.shutdown() } }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/flaky0.bin").absoluteString
            let quiet = try runHaul(["get", url, "-o", scratch.file("q").path, "-x", "4", "--fixed", "-q", "-vv"])
            #expect(quiet.status == 0)
            #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty, "stdout: \(quiet.stdout) stderr: \(quiet.stderr)")
            #expect(try SHA256.hex(ofFileAt: scratch.file("q").path) == content.sha256)

            let json = try runHaul(["get", server.url("/flaky1.bin").absoluteString, "-o", scratch.file("j").path, "-x", "4", "--fixed", "--json", "-v"])
            #expect(json.status == 0)
            let records = json.stderr.split(separator: "\n").map { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            }
            #expect(!records.isEmpty && records.allSatisfy { $0?["event"] as? String == "log" }, "stderr: \(json.stderr)")
            #expect(records.contains { ($0?["metadata"] as? [String: String])?["reason"]?.contains("HTTP 503") == true })
            for line in json.stdout.split(separator: "\n") {
                let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
                #expect(object?["event"] as? String != "log", "a log record on stdout: \(line)")
            }
            #expect(try SHA256.hex(ofFileAt: scratch.file("j").path) == content.sha256)
        }
    }
}
