import Foundation
@testable import Haul
import Synchronization
import Testing

@Suite("Disk workers")
struct DiskWorkersTests {
    @Test("Work that blocks runs side by side up to the width, more than the cores, and idle threads end")
    func blockingWorkOverlaps() async throws {
        let width = 6
        let workers = DiskWorkers(width: width, idleLifetime: 0.2)
        let inside = Mutex(0)
        let peak = Mutex(0)
        let finished = DispatchGroup()
        // Each job waits (up to 5 s) until every other one has started: they all finish at
        // once only if `width` run together; one or two at a time, each waits the 5 s out.
        let start = ContinuousClock.now
        for _ in 0..<width {
            finished.enter()
            workers.async {
                let now = inside.withLock { $0 += 1; return $0 }
                peak.withLock { $0 = max($0, now) }
                let deadline = ContinuousClock.now + .seconds(5)
                while inside.withLock({ $0 }) < width, ContinuousClock.now < deadline {
                    usleep(1000)
                }
                finished.leave()
            }
        }
        #expect(finished.wait(timeout: .now() + 60) == .success)
        #expect(peak.withLock { $0 } == width, "at most \(peak.withLock { $0 }) ran at once")
        #expect(ContinuousClock.now - start < .seconds(4))
        #expect(workers.threadCount <= width)
        // Without work, the threads end.
        let deadline = ContinuousClock.now + .seconds(10)
        while workers.threadCount > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(workers.threadCount == 0)
        // And come back for new work.
        let again = DispatchSemaphore(value: 0)
        workers.async { again.signal() }
        #expect(again.wait(timeout: .now() + 10) == .success)
    }
}
