import Foundation
import Haul
import HaulTestServer
import Testing

extension Integration {
    /// Misbehaving-server scenarios, one JSON file each in `Scenarios/`, all run by one test.
    /// `HAUL_SCENARIO=name[,name…]` runs only those; `HAUL_SCENARIO_VERBOSE=1` prints what the
    /// server saw for passing scenarios too.
    @Suite("Scenarios")
    struct ScenarioTests {
        @Test("Fault scenario", arguments: ScenarioFile.names())
        func allScenarios(_ name: String) async throws {
            let scenario: ScenarioFile
            do {
                scenario = try ScenarioFile.load(name)
            } catch {
                Issue.record("Scenarios/\(name).json cannot be read: \(error)")
                return
            }
            let runner = ScenarioRunner(scenario: scenario)
            let outcome = try await runner.run()
            let check = ScenarioCheck(scenario: scenario, outcome: outcome, digests: runner.versionDigests())
            let problems = check.problems
            for problem in problems {
                Issue.record("Scenarios/\(name).json (\(scenario.description)): \(problem)")
            }
            let verbose = ProcessInfo.processInfo.environment["HAUL_SCENARIO_VERBOSE"] != nil
            if !problems.isEmpty || verbose { print("Scenarios/\(name).json: \(check.requestSummary)") }
        }
    }
}
