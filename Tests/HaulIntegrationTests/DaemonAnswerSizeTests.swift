import Foundation
import HaulDaemon
import Testing

extension Integration {
    @Suite("Daemon: answers stay bounded")
    struct DaemonAnswerSizeTests {
        /// A saved state with 1000 stopped downloads whose URIs are long: `tellStopped(0, 1000)`
        /// answers several MB.
        private func bigHistory(_ scratch: Scratch, count: Int = 1000, urisEach: Int = 1) throws {
            try FileManager.default.createDirectory(at: scratch.file("state"), withIntermediateDirectories: true)
            let long = "http://127.0.0.1:9/" + String(repeating: "a", count: 8000)
            let uris = Array(repeating: #""\#(long)""#, count: urisEach).joined(separator: ",")
            let entries = (0..<count).map { index in
                #"{"gid":"\#(String(format: "%016x", index + 1))","uris":[\#(uris)],"name":"f\#(index).bin","status":"complete"}"#
            }
            let json = #"{"version":1,"queue":[],"stopped":["# + entries.joined(separator: ",") + "]}"
            try Data(json.utf8).write(to: scratch.file("state/queue.json"))
        }

        @Test("A multicall or a batch of large answers stops at 16 MiB: its further calls get an error, not gigabytes")
        func bounded() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try bigHistory(scratch)
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            let call: [String: Any] = ["methodName": "aria2.tellStopped", "params": ["token:\(rpc.secret)", 0, 1000]]
            let results = try #require(try await rpc.call("system.multicall", [Array(repeating: call, count: 6)], token: "") as? [Any])
            #expect(results.count == 6)
            let full = results.filter { ($0 as? [Any])?.first is [Any] }.count
            let refused = results.compactMap { $0 as? [String: Any] }.filter { ($0["message"] as? String ?? "").contains("16 MiB") }
            #expect(full >= 2 && full <= 4, "\(full) whole answers")
            #expect(refused.count == 6 - full)
            // A batch of the same: the same bound, each refused call with its own id.
            let batch = try JSONSerialization.data(withJSONObject: (0..<6).map { index in
                ["jsonrpc": "2.0", "id": index, "method": "aria2.tellStopped", "params": ["token:\(rpc.secret)", 0, 1000]] as [String: Any]
            })
            let (status, json) = try await rpc.post(batch)
            #expect(status == 200)
            let answers = try #require(json as? [[String: Any]])
            #expect(answers.count == 6)
            let errors = answers.filter { (($0["error"] as? [String: Any])?["message"] as? String ?? "").contains("16 MiB") }
            #expect(errors.count >= 2 && errors.count <= 4)
            #expect(Set(answers.compactMap { $0["id"] as? Int }) == Set(0..<6))
        }

        @Test("One status list that would pass 16 MiB is refused with the advice to ask for fewer")
        func oneLargeList() async throws {
            let scratch = Scratch()
            defer { scratch.cleanup() }
            try bigHistory(scratch, count: 700, urisEach: 4)
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            await #expect(throws: RPCFailure.self) { _ = try await rpc.call("aria2.tellStopped", [0, 1000]) }
            do {
                _ = try await rpc.call("aria2.tellStopped", [0, 1000])
            } catch let failure as RPCFailure {
                #expect(failure.message.contains("16 MiB"), "\(failure)")
            }
            let some = try #require(try await rpc.call("aria2.tellStopped", [0, 50]) as? [[String: Any]])
            #expect(some.count == 50)
        }
    }
}
