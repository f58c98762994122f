import Foundation
import HaulTestServer

/// One fault scenario as written in `Scenarios/<name>.json`: the server's behaviour, the
/// client's settings and what must come out. A new fault is one new file:
///
/// ```json
/// {
///   "name": "consistent-liar",
///   "description": "ranged answers past 0 carry the bytes 4096 after those asked",
///   "server": {
///     "versions": [{ "seed": 102, "size": 8388608, "etag": "\"c1\"" }],
///     "rules": [{ "when": { "startAbove": 0 }, "then": { "shiftBody": 4096 } }]
///   },
///   "client": { "connections": 16 },
///   "expect": { "outcome": "exactOrError", "errors": ["inconsistentContent"], "maxSeconds": 20 }
/// }
/// ```
///
/// `server` is a `ScenarioBehaviour` (see its fields, `RequestSelector` and `ResponseAction`).
struct ScenarioFile: Decodable, Sendable {
    /// The scenario's name: the file's name without `.json`.
    var name: String
    /// One line: what the server does wrong.
    var description: String
    /// How the server behaves (versions of the content, schedule, rules).
    var server: ScenarioBehaviour
    /// The download's settings.
    var client: Client?
    /// What must come out.
    var expect: Expectation

    /// The download's settings; unset fields take the defaults noted.
    struct Client: Decodable, Sendable {
        /// The path downloaded (default `/file.bin`).
        var path: String?
        /// `connectionsPerDownload` (default 16).
        var connections: Int?
        /// Let the download find its connection count (default false: exactly `connections`).
        var adaptive: Bool?
        /// `minimumSplitSize` (default 1 MiB).
        var minimumSplit: Int64?
        /// `retryLimit` (default 5).
        var retries: Int?
        /// `timeoutIntervalForRequest`, the stall timeout in seconds (default 30).
        var stallSeconds: Double?
        /// `maximumBytesPerSecond` (default 0: unlimited).
        var maximumBytesPerSecond: Int64?
        /// Paths on the same server given as `task.mirrors`.
        var mirrors: [String]?
        /// `task.expectedSHA256`: 64 hex digits, or `version:N` for the digest of version N.
        var expectedSHA256: String?
    }

    /// What must come out of the download.
    struct Expectation: Decodable, Sendable {
        /// The acceptable outcomes.
        enum Outcome: String, Decodable, Sendable {
            /// The file is version 0, byte for byte.
            case exact
            /// The file is version 0, or the download fails with one of `errors`.
            case exactOrError
            /// The file is exactly one of `versions` (default: any served version).
            case oneVersion
            /// The file is exactly one of `versions`, or the download fails with one of `errors`.
            case oneVersionOrError
            /// The download fails with one of `errors`.
            case error
        }

        var outcome: Outcome
        /// Acceptable error names: `HaulError` case names (`invalidContentRange`) or
        /// `URLError.<code>` (`URLError.timedOut`; the bare code name matches too).
        var errors: [String]?
        /// For `oneVersion…`: the acceptable version numbers (default: all).
        var versions: [Int]?
        /// The download must end within this many seconds (default 60).
        var maxSeconds: Double?
        /// The download must take at least this many seconds (for rate limits).
        var minSeconds: Double?
        /// What the server must (not) have seen.
        var requests: RequestExpectation?
        /// Names that must not be in the scratch directory after a failure (beyond the rule that
        /// a failure without resume data leaves nothing).
        var mustNotExistOnFailure: [String]?
    }

    /// Conditions on the requests the server saw.
    struct RequestExpectation: Decodable, Sendable {
        /// At most this many requests.
        var max: Int?
        /// At least this many requests.
        var min: Int?
        /// true: some request has no `Range` header; false: every request has one (no fallback to one stream).
        var someWithoutRange: Bool?
        /// Every request after the first that has a `Range` carries `If-Range`.
        var ifRangeAfterFirst: Bool?
        /// Each of these paths was requested at least once.
        var pathsRequested: [String]?
    }

    /// The directory of the scenario files, beside this source file.
    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scenarios")
    }

    /// The names of all scenarios, sorted; only `HAUL_SCENARIO` (comma-separated names) when set.
    static func names() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let all = files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
        guard let filter = ProcessInfo.processInfo.environment["HAUL_SCENARIO"], !filter.isEmpty else { return all }
        let wanted = Set(filter.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        return all.filter { wanted.contains($0) }
    }

    /// A file whose `name` is not its file name.
    struct NameMismatch: Error, CustomStringConvertible {
        var file: String
        var stated: String
        var description: String { "the file \(file).json states the name \(stated)" }
    }

    /// Reads and decodes `Scenarios/<name>.json`.
    static func load(_ name: String) throws -> ScenarioFile {
        let data = try Data(contentsOf: directory.appendingPathComponent("\(name).json"))
        let file = try JSONDecoder().decode(ScenarioFile.self, from: data)
        guard file.name == name else { throw NameMismatch(file: name, stated: file.name) }
        return file
    }
}
