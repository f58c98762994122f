import Foundation
import Haul
@testable import HaulDaemon
import Testing

/// The protocol as data: each file in `RPC/` is one call (method and parameters; the token is
/// added unless `"token": false`, or replaced by a given string) and what aria2 would answer.
private let rpcDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("RPC")
private let rpcCases: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: rpcDirectory.path)) ?? [])
    .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()

extension Integration {
    @Suite("JSON-RPC pairs as data")
    struct RPCTableTests {
        @Test("Each stored request gets aria2's answer", arguments: rpcCases)
        func pair(name: String) async throws {
            let data = try Data(contentsOf: rpcDirectory.appendingPathComponent("\(name).json"))
            let spec = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let call = try #require(spec["call"] as? [Any])
            let method = try #require(call.first as? String)
            let expect = try #require(spec["expect"] as? [String: Any])
            let scratch = Scratch()
            defer { scratch.cleanup() }
            let (daemon, rpc) = try await startDaemon(scratch)
            defer { Task { await daemon.stop() } }
            var params = Array(call.dropFirst())
            switch spec["token"] {
            case let given as String: params.insert(given, at: 0)
            case let flag as Bool where flag == false: break
            default: params.insert("token:\(rpc.secret)", at: 0)
            }
            let body = try JSONSerialization.data(withJSONObject: ["jsonrpc": "2.0", "id": name, "method": method, "params": params])
            let answer = try #require(try await rpc.post(body).json as? [String: Any], "\(name): no JSON answer")
            #expect(answer["id"] as? String == name && answer["jsonrpc"] as? String == "2.0", "\(name): \(answer)")
            if let error = expect["error"] as? [String: Any] {
                let got = try #require(answer["error"] as? [String: Any], "\(name): expected an error, got \(answer)")
                #expect(got["code"] as? Int == error["code"] as? Int, "\(name): \(got)")
                if let message = error["message"] as? String { #expect(got["message"] as? String == message, "\(name): \(got)") }
                if let part = error["messageContains"] as? String {
                    #expect((got["message"] as? String)?.contains(part) == true, "\(name): \(got)")
                }
                return
            }
            let result = try #require(answer["result"], "\(name): expected a result, got \(answer)")
            if let exact = expect["result"] {
                #expect(NSDictionary(dictionary: ["r": result]).isEqual(to: ["r": exact]), "\(name): \(result)")
            }
            if let keys = expect["resultKeys"] as? [String] {
                #expect(Set((result as? [String: Any])?.keys.map { $0 } ?? []) == Set(keys), "\(name): \(result)")
            }
            if let count = expect["resultCount"] as? Int {
                #expect((result as? [Any])?.count == count, "\(name): \(result)")
            }
            if let members = expect["resultContains"] as? [String] {
                #expect(Set(result as? [String] ?? []).isSuperset(of: members), "\(name): \(result)")
            }
        }
    }
}
