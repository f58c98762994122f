@testable import Haul
import Testing

/// The connection count as a function of measured throughput: simulated links, no I/O.
@Suite("ConnectionGovernor")
struct ConnectionGovernorTests {
    /// A link model: bytes per second as a function of the connection count.
    typealias Link = (Int) -> Double

    /// Runs the governor against `link` for `seconds` in 100 ms ticks; returns the targets seen
    /// at each tick and the bytes moved.
    static func simulate(_ governor: inout ConnectionGovernor, link: Link, seconds: Double,
                         lag: Int = 0) -> (targets: [Int], bytes: Double) {
        var bytes = 0.0
        var targets: [Int] = []
        // New connections take `lag` ticks to reach speed (the running count follows the target).
        var running = governor.target
        var pendingChange: (count: Int, at: Int)?
        for tick in 0..<Int(seconds * 10) {
            if let change = pendingChange, tick >= change.at {
                running = change.count
                pendingChange = nil
            }
            bytes += link(running) / 10
            if let target = governor.observe(now: .milliseconds(100 * (tick + 1)), bytes: Int64(bytes)) {
                pendingChange = (target, tick + 1 + lag)
            }
            targets.append(governor.target)
        }
        return (targets, bytes)
    }

    @Test("A link one connection fills: it tries more, sees no gain, and goes back to one")
    func unthrottled() {
        var governor = ConnectionGovernor(ceiling: 16)
        // Sixteen connections cost 15% of a CPU-bound link.
        let result = Self.simulate(&governor, link: { $0 == 1 ? 800e6 : 700e6 }, seconds: 3)
        #expect(result.targets.contains(16))
        #expect(governor.target == 1)
        #expect(result.targets.suffix(15).allSatisfy { $0 == 1 })
    }

    @Test("A server that limits each connection: it goes to the ceiling and stays")
    func perConnectionLimit() {
        var governor = ConnectionGovernor(ceiling: 16)
        let result = Self.simulate(&governor, link: { Double($0) * 8e6 }, seconds: 3)
        #expect(governor.target == 16)
        // The ceiling is reached within the first second.
        #expect(result.targets.prefix(10).contains(16))
    }

    @Test("A link that four connections fill: it settles near four, not sixteen")
    func saturatesAtFour() {
        var governor = ConnectionGovernor(ceiling: 16)
        _ = Self.simulate(&governor, link: { Double(min($0, 4)) * 50e6 * ($0 > 8 ? 0.9 : 1) }, seconds: 3)
        #expect((4...6).contains(governor.target))
    }

    @Test("A short download where more helped stays at the count that helped: a wrong try of fewer would cost too much of it")
    func shortDownloadKeepsCount() {
        // The same link as above, but 300 MB are left: about 1.5 s at sixteen, under the horizon.
        var governor = ConnectionGovernor(ceiling: 16)
        let link: Link = { Double(min($0, 4)) * 50e6 * ($0 > 8 ? 0.9 : 1) }
        var bytes = 0.0
        var running = governor.target
        var targets: [Int] = []
        for tick in 0..<30 {
            bytes += link(running) / 10
            if let target = governor.observe(now: .milliseconds(100 * (tick + 1)), bytes: Int64(bytes),
                                             left: max(0, 300_000_000 - Int64(bytes))) {
                running = target
            }
            targets.append(governor.target)
        }
        #expect(targets.contains(16))
        #expect(governor.target == 16)
        #expect(!targets.contains { (2..<16).contains($0) }, "no try of fewer: \(targets)")
        // With a long rest (the horizon is ten seconds at the measured speed), it trims.
        var long = ConnectionGovernor(ceiling: 16)
        long.trimHorizon = .seconds(1)
        bytes = 0
        running = long.target
        for tick in 0..<30 {
            bytes += link(running) / 10
            if let target = long.observe(now: .milliseconds(100 * (tick + 1)), bytes: Int64(bytes),
                                         left: max(0, 300_000_000 - Int64(bytes))) {
                running = target
            }
        }
        #expect((4...6).contains(long.target))
    }

    @Test("A transfer loop busy nearly all the time on one connection gets no more: they would share it; once it frees up, the next reprobe tries more")
    func saturatedLoop() {
        var governor = ConnectionGovernor(ceiling: 16)
        governor.reprobeInterval = .seconds(1)
        // A server that limits each connection to 8 MB/s, and a loop 95% busy for the first two
        // seconds (another download of the session on a fast link, a disk that makes writes
        // wait), then 5%.
        var bytes = 0.0
        var busy = Duration.zero
        var running = governor.target
        var targets: [Int] = []
        for tick in 0..<40 {
            let saturated = tick < 20
            bytes += Double(running) * 8e6 / 10
            busy += .milliseconds(saturated ? 95 : 5)
            if let target = governor.observe(now: .milliseconds(100 * (tick + 1)), bytes: Int64(bytes), busy: busy) {
                running = target
            }
            targets.append(governor.target)
        }
        #expect(targets.prefix(20).allSatisfy { $0 == 1 }, "\(targets)")
        #expect(governor.target == 16, "\(targets)")
        // Without the loop's time the same link gets a try at once.
        var blind = ConnectionGovernor(ceiling: 16)
        #expect(Self.simulate(&blind, link: { Double($0) * 8e6 }, seconds: 1).targets.contains(16))
    }

    @Test("Fewer connections that lose speed are not kept: it goes back up")
    func trimmingThatLoses() {
        var governor = ConnectionGovernor(ceiling: 16)
        // Each of 16 connections adds a little: trimming to what the gain asks for loses speed.
        _ = Self.simulate(&governor, link: { $0 == 1 ? 10e6 : Double($0) * 2.5e6 + 20e6 }, seconds: 3)
        #expect(governor.target == 16)
    }

    @Test("Fewer connections kept after one lucky window go back up when the speed does not hold")
    func luckyTrim() {
        final class Luck { var ticks = 0 }
        let luck = Luck()
        var governor = ConnectionGovernor(ceiling: 16)
        // One connection 40 MB/s, sixteen 160 MB/s: the gain asks for five. Five look as fast for
        // their first few ticks, then fall to 50 MB/s.
        let result = Self.simulate(&governor, link: { count in
            switch count {
            case 1: return 40e6
            case 5:
                luck.ticks += 1
                return luck.ticks <= 4 ? 160e6 : 50e6
            default: return Double(min(count, 16)) * 10e6
            }
        }, seconds: 3)
        #expect(result.targets.contains(5))
        #expect(governor.target == 16)
    }

    @Test("A server that is silent for part of each second (nginx's limit_rate) is not judged on one silent window")
    func silentWindows() {
        var governor = ConnectionGovernor(ceiling: 16)
        var tick = 0
        // Every connection gets its 8 MB at the start of each second, then nothing until the next.
        _ = Self.simulate(&governor, link: { count in
            tick += 1
            return tick % 10 == 3 ? Double(count) * 80e6 : 0
        }, seconds: 4)
        #expect(governor.target == 16)
    }

    @Test("Held below the ceiling, it tries again later and follows a link that changed")
    func reprobes() {
        var governor = ConnectionGovernor(ceiling: 16)
        governor.reprobeInterval = .seconds(2)
        _ = Self.simulate(&governor, link: { _ in 100e6 }, seconds: 2)
        #expect(governor.target == 1)
        // Now the server limits each connection.
        _ = Self.simulate(&governor, link: { Double($0) * 5e6 }, seconds: 8)
        #expect(governor.target > 1)
    }

    @Test("A floor (one connection per mirror) and a ceiling of one are kept")
    func bounds() {
        var floored = ConnectionGovernor(ceiling: 16, floor: 3)
        #expect(floored.target == 3)
        _ = Self.simulate(&floored, link: { _ in 100e6 }, seconds: 3)
        #expect(floored.target == 3)
        var single = ConnectionGovernor(ceiling: 1)
        _ = Self.simulate(&single, link: { Double($0) * 8e6 }, seconds: 2)
        #expect(single.target == 1)
    }
}

@Suite("DownloadStateMachine, adapting")
struct AdaptiveMachineTests {
    @Test("Chunks last long enough that the shortest wait for a response's first byte is a twentieth of them: short on a near server, up to a second on a far one")
    func chunkDurationFollowsWait() {
        var options = DownloadStateMachine.Options(connections: 4, minimumSplit: 1)
        options.adaptsConnections = true
        var machine = DownloadStateMachine(options: options)
        #expect(machine.chunkDuration == .seconds(1), "nothing measured yet")
        machine.measured(wait: .milliseconds(30))
        #expect(machine.chunkDuration == .milliseconds(600))
        // A longer wait is the server holding the response back (a rate limit): the round trip
        // is the shortest wait seen.
        machine.measured(wait: .milliseconds(120))
        #expect(machine.chunkDuration == .milliseconds(600))
        machine.measured(wait: .microseconds(300))
        #expect(machine.chunkDuration == .milliseconds(100))
        // A far server: every wait is long.
        var far = DownloadStateMachine(options: options)
        for _ in 0..<3 { far.measured(wait: .milliseconds(200)) }
        #expect(far.chunkDuration == .seconds(1))
    }


    @Test("Adapting: the probe runs alone; when more connections help they take chunks in file order; when they do not, the surplus stops and its ranges go back")
    func growsAndSheds() {
        var options = DownloadStateMachine.Options(connections: 4, minimumSplit: 10)
        options.adaptsConnections = true
        options.maximumChunk = 100
        var machine = DownloadStateMachine(options: options)
        _ = machine.start()
        let length: Int64 = 10_000
        let after = machine.received(ResponseHead(status: 206, fields: [("Content-Range", "bytes 0-\(length - 1)/\(length)"),
                                                                       ("Content-Length", "\(length)"), ("ETag", "\"e\"")]), for: 0)
        #expect(!after.contains { if case .start = $0 { true } else { false } }, "only the probe runs at first")
        // The probe moves 10 bytes a tick until the governor tries the ceiling.
        var tick = 0
        var started: [DownloadStateMachine.Request] = []
        while started.isEmpty, tick < 20 {
            tick += 1
            _ = machine.advance(0, by: 10)
            for case .start(let request) in machine.tick(now: .milliseconds(100 * tick)) { started.append(request) }
        }
        #expect(started.count == 3)
        let starts = started.map(\.from)
        #expect(starts == starts.sorted(), "chunks in file order")
        #expect(machine.governor.target == 4)
        // Four connections move no more than one did: the surplus is stopped. (A response whose
        // range is whole is ended too, as done; that is not the surplus.)
        var cancelled = 0
        for _ in 0..<10 {
            tick += 1
            if let moving = machine.requests.keys.sorted().first(where: { machine.plan.segments[$0].remaining > 0 }) {
                _ = machine.advance(moving, by: 10)
            }
            let whole = Set(machine.requests.keys.filter { machine.plan.segments[$0].remaining == 0 })
            for case .cancel(let segment) in machine.tick(now: .milliseconds(100 * tick)) where !whole.contains(segment) {
                cancelled += 1
            }
        }
        #expect(machine.governor.target == 1)
        #expect(cancelled == 3)
        #expect(machine.requests.count == 1)
        #expect(machine.plan.pendingBytes > 0)
    }
}
