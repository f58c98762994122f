import Foundation
import Haul
import HaulTestServer
import Testing

/// What `haul` wrote to a pseudo-terminal, before and after it was resized.
struct TerminalTranscript: Decodable {
    var status: Int32
    var before: String
    var after: String

    /// The progress rows as drawn (each redrawn row starts with "erase line").
    static func rows(_ text: String) -> [String] {
        text.components(separatedBy: "\u{1B}[2K").dropFirst().map { piece in
            String(piece.prefix { $0 != "\n" && $0 != "\r" && $0 != "\r\n" }).replacingOccurrences(
                of: "\u{1B}\\[[0-9;]*[A-Za-z]", with: "", options: .regularExpression)
        }.filter { !$0.isEmpty }
    }
}

/// Runs `haul arguments` on a pseudo-terminal `columns` wide (Python's `pty`), resized to
/// `resizeColumns` after `resizeAfter` seconds when given; at most `timeout` seconds.
func runHaulOnTerminal(_ arguments: [String], columns: Int, resizeAfter: Double? = nil, resizeColumns: Int? = nil,
                       timeout: Double = 60) throws -> TerminalTranscript {
    let driver = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Terminal/pty_run.py")
    var driverArguments = [driver.path, "--cols", "\(columns)", "--timeout", "\(timeout)"]
    if let resizeAfter, let resizeColumns {
        driverArguments += ["--resize-after", "\(resizeAfter)", "--resize-cols", "\(resizeColumns)"]
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + driverArguments + ["--", try haulExecutable().path] + arguments
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return try JSONDecoder().decode(TerminalTranscript.self, from: data)
}

extension Integration {
    @Suite("haul's progress: terminal width, resizes, pipes, results table")
    struct CLIProgressTests {
        @Test("At 40 columns every redrawn row fits and replaces itself; a long name is shortened in the middle; a resize is followed")
        func narrowTerminalAndResize() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 3 << 20, seed: 91)
            server.serve(ServedFile(content: content, etag: "\"t\"", bytesPerSecond: 1 << 20), at: "/f")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let name = "a-very-long-file-name-that-cannot-fit-in-forty-columns-at-all.iso"
            let transcript = try runHaulOnTerminal(["get", server.url("/f").absoluteString, "-o", scratch.file(name).path,
                                                    "-x", "1"],
                                                   columns: 40, resizeAfter: 1.5, resizeColumns: 100, timeout: 30)
            #expect(transcript.status == 0, "\(transcript)")
            #expect(try SHA256.hex(ofFileAt: scratch.file(name).path) == content.sha256)
            let before = TerminalTranscript.rows(transcript.before)
            let after = TerminalTranscript.rows(transcript.after)
            #expect(!before.isEmpty && !after.isEmpty, "\(transcript)")
            #expect(before.allSatisfy { $0.count <= 39 }, "\(before)")
            #expect(after.allSatisfy { $0.count <= 99 }, "\(after)")
            // Wider after the resize: the terminal's new width was read.
            #expect(after.contains { $0.count > 40 }, "\(after)")
            // One row, moved up over exactly once per redraw: it never wrapped.
            #expect(transcript.before.contains("\u{1B}[1F"))
            #expect(!transcript.before.contains("\u{1B}[2F"))
            #expect(before.contains { $0.hasPrefix("a-very") && $0.contains("…") })
            #expect(after.contains { $0.contains("…") && $0.contains("all.iso") })
        }

        @Test("Not a terminal: a plain progress line every interval on stderr, none with -q")
        func plainProgressLines() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let content = GeneratedContent(size: 2 << 20, seed: 92)
            server.serve(ServedFile(content: content, etag: "\"p\"", bytesPerSecond: 1 << 20), at: "/p.bin")
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let url = server.url("/p.bin").absoluteString
            let result = try runHaul(["get", url, "-o", scratch.file("p.bin").path, "-x", "1", "--progress-interval", "0.5"])
            #expect(result.status == 0)
            #expect(try SHA256.hex(ofFileAt: scratch.file("p.bin").path) == content.sha256)
            let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("haul: p.bin: ") && $0.contains("% of 2.0 MiB") }
            #expect(lines.count >= 2, "stderr: \(result.stderr)")
            #expect(lines.contains { $0.contains("/s, ETA ") }, "stderr: \(result.stderr)")
            #expect(!result.stdout.contains("% of"))
            let quiet = try runHaul(["get", url, "-o", scratch.file("q.bin").path, "-x", "1", "-q", "--progress-interval", "0.5"])
            #expect(quiet.status == 0 && quiet.stderr.isEmpty && quiet.stdout.isEmpty)
        }

        @Test("A batch's progress reports each download's real speed and ends with a results table; a failure sets the exit code")
        func batchSpeedAndTable() async throws {
            let server = try await TestServer.start()
            defer { Task { await server.shutdown() } }
            let rate = 512 << 10
            let contents = (0..<2).map { GeneratedContent(size: 1536 << 10, seed: 93 + UInt64($0)) }
            for (index, content) in contents.enumerated() {
                server.serve(ServedFile(content: content, etag: "\"b\(index)\"", bytesPerSecond: rate), at: "/b\(index).bin")
            }
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let urls = (0..<2).map { server.url("/b\($0).bin").absoluteString }
            let json = try runHaul(["get"] + urls + ["-d", scratch.file("json").path, "-x", "1", "--json"])
            #expect(json.status == 0, "\(json.stderr)")
            let speeds = json.stdout.split(separator: "\n").compactMap { line -> Int? in
                guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                      object["event"] as? String == "progress" else { return nil }
                return object["bytes_per_second"] as? Int
            }
            // Each download is served at `rate`: its row shows about that, not a fraction of it.
            #expect(!speeds.isEmpty, "\(json.stdout)")
            #expect(speeds.allSatisfy { $0 > rate * 4 / 10 && $0 < rate * 16 / 10 }, "speeds: \(speeds)")

            let table = try runHaul(["get"] + urls + [server.url("/missing.bin").absoluteString, "-d", scratch.file("t").path])
            #expect(table.status == 2, "\(table.stderr)")
            let lines = table.stdout.split(separator: "\n").map(String.init)
            let header = try #require(lines.firstIndex { $0.hasPrefix("NAME") && $0.contains("SPEED") && $0.hasSuffix("STATUS") },
                                      "stdout: \(table.stdout)")
            let rows = lines[(header + 1)...]
            #expect(rows.count == 3)
            #expect(rows.filter { $0.hasSuffix("  ok") && $0.contains("1.5 MiB") && $0.contains("/s") }.count == 2, "\(rows)")
            #expect(rows.contains { $0.hasPrefix("missing.bin") && $0.contains("404") && $0.contains("exit 2") }, "\(rows)")
            for (index, content) in contents.enumerated() {
                #expect(try SHA256.hex(ofFileAt: scratch.file("t/b\(index).bin").path) == content.sha256)
            }
        }
    }
}
