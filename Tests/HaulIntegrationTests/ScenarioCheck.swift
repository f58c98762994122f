import Foundation
import Haul
import HaulTestServer

/// Compares what a scenario run produced with what its file expects; each difference is one
/// line naming what differed.
struct ScenarioCheck {
    let scenario: ScenarioFile
    let outcome: ScenarioRunner.Outcome
    /// The digest of each served version.
    let digests: [String]

    var problems: [String] {
        var problems: [String] = []
        let expect = scenario.expect
        let bound = expect.maxSeconds ?? 60
        let seconds = Double(outcome.elapsed.components.seconds) + Double(outcome.elapsed.components.attoseconds) / 1e18
        if outcome.timedOut {
            problems.append("did not finish within \(bound) s (cancelled after \(format(seconds)) s)")
        } else if seconds > bound {
            problems.append("took \(format(seconds)) s, more than maxSeconds \(bound)")
        }
        if let least = expect.minSeconds, !outcome.timedOut, outcome.error == nil, seconds < least {
            problems.append("took \(format(seconds)) s, less than minSeconds \(least)")
        }
        if !outcome.timedOut {
            if let error = outcome.error {
                problems += failureProblems(error)
            } else {
                problems += successProblems()
            }
        }
        problems += requestProblems()
        return problems
    }

    private func format(_ seconds: Double) -> String { String(format: "%.1f", seconds) }

    /// What the file on disk is: `version N`, or a description of a mismatch.
    private func describeFile() -> String {
        guard let digest = outcome.digest else { return "no file at the destination" }
        if let version = digests.firstIndex(of: digest) { return "the file is version \(version)" }
        return "the file matches no served version (sha256 \(digest.prefix(16))…)"
    }

    private func successProblems() -> [String] {
        var problems: [String] = []
        let expect = scenario.expect
        switch expect.outcome {
        case .error:
            problems.append("succeeded (\(describeFile())) but expected an error: \(expect.errors ?? [])")
        case .exact, .exactOrError:
            if outcome.digest != digests.first {
                problems.append("succeeded but the bytes are not version 0: \(describeFile())")
            }
        case .oneVersion, .oneVersionOrError:
            let allowed = expect.versions ?? Array(digests.indices)
            let version = outcome.digest.flatMap { digests.firstIndex(of: $0) }
            if version.map({ !allowed.contains($0) }) ?? true {
                problems.append("succeeded but \(describeFile()); expected one of versions \(allowed)")
            }
        }
        if outcome.leftovers != [ScenarioRunner.destinationName] {
            problems.append("after success the directory holds \(outcome.leftovers), not just \(ScenarioRunner.destinationName)")
        }
        return problems
    }

    private func failureProblems(_ error: any Error) -> [String] {
        var problems: [String] = []
        let expect = scenario.expect
        let names = ErrorName.names(of: error)
        let allowed = expect.errors ?? []
        let described = "\(names[0]) (\(String(describing: error).prefix(160)))"
        switch expect.outcome {
        case .exact, .oneVersion:
            problems.append("failed with \(described); expected success (\(expect.outcome.rawValue))")
        case .exactOrError, .oneVersionOrError, .error:
            if Set(names).isDisjoint(with: allowed) {
                let wanted = expect.outcome == .error ? "one of \(allowed)" : "success or one of \(allowed)"
                problems.append("failed with \(described); expected \(wanted)")
            }
        }
        // A failure never leaves the destination; without resume data it leaves nothing at all.
        var forbidden = Set(expect.mustNotExistOnFailure ?? [])
        forbidden.insert(ScenarioRunner.destinationName)
        let present = outcome.leftovers.filter { forbidden.contains($0) }
        if !present.isEmpty { problems.append("after failure these files exist: \(present)") }
        if HaulError.resumeData(from: error) == nil, !outcome.leftovers.isEmpty, present.isEmpty {
            problems.append("failure without resume data left files: \(outcome.leftovers)")
        }
        return problems
    }

    /// One line on what the server saw: counts and the first requests.
    var requestSummary: String {
        let requests = outcome.requests
        let connections = Set(requests.map(\.connection)).count
        let all = ProcessInfo.processInfo.environment["HAUL_SCENARIO_VERBOSE"] == "2"
        let first = requests.prefix(all ? requests.count : 6).map {
            "#\($0.index)@\($0.connection) \($0.path) \($0.range ?? "-")\($0.ifRange.map { " if-range \($0)" } ?? "")"
        }
        let ended = outcome.error.map { "failed: \(String(describing: $0).prefix(300))" } ?? "succeeded: \(describeFile())"
        let seconds = Double(outcome.elapsed.components.seconds) + Double(outcome.elapsed.components.attoseconds) / 1e18
        return "\(ended) after \(String(format: "%.2f", seconds)) s; \(requests.count) requests on \(connections) connections; "
            + "\(all ? "all" : "first"): \(first.joined(separator: ", "))"
    }

    private func requestProblems() -> [String] {
        guard let expected = scenario.expect.requests else { return [] }
        var problems: [String] = []
        let requests = outcome.requests
        if let max = expected.max, requests.count > max {
            problems.append("\(requests.count) requests, more than \(max)")
        }
        if let min = expected.min, requests.count < min {
            problems.append("\(requests.count) requests, fewer than \(min)")
        }
        if expected.someWithoutRange == true, !requests.contains(where: { $0.range == nil }) {
            problems.append("no request without a Range header")
        }
        if expected.someWithoutRange == false, let bare = requests.first(where: { $0.range == nil }) {
            problems.append("request #\(bare.index) has no Range header (the download fell back to one stream)")
        }
        if expected.ifRangeAfterFirst == true {
            let bare = requests.dropFirst().filter { $0.range != nil && $0.ifRange == nil }
            if let first = bare.first {
                problems.append("\(bare.count) ranged requests after the first lack If-Range, e.g. #\(first.index) \(first.range ?? "")")
            }
        }
        for path in expected.pathsRequested ?? [] where !requests.contains(where: { $0.path == path }) {
            problems.append("\(path) was never requested")
        }
        return problems
    }
}
