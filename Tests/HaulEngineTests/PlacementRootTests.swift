import Foundation
@testable import Haul
import Synchronization
import Testing

@Suite("The placement root under concurrent use")
struct PlacementRootTests {
    @Test("Files made, published and removed by 16 threads at once in one directory all land whole")
    func concurrentNames() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("haul-root-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let root = try PlacementRoot(directory: path)
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { thread in
            for index in 0..<12 {
                let name = "f\(thread)-\(index)"
                let bytes = Array("\(name) ".utf8) + [UInt8](repeating: UInt8(thread), count: 1000 + index)
                do {
                    let file = try root.createFile(".\(name).part")
                    try bytes.withUnsafeBytes { try file.write($0, at: 0) }
                    try root.publish(file, named: ".\(name).part", to: name, replacing: false)
                    file.close()
                    // A leftover made and removed again beside the others.
                    try root.createFile(".\(name).extra").close()
                    root.remove(".\(name).extra")
                } catch {
                    failures.withLock { $0.append("\(name): \(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        #expect(names.count == 16 * 12, "\(names.filter { $0.hasPrefix(".") })")
        for thread in 0..<16 {
            for index in 0..<12 {
                let name = "f\(thread)-\(index)"
                let data = try Data(contentsOf: URL(fileURLWithPath: path).appendingPathComponent(name))
                #expect(Array(data) == Array("\(name) ".utf8) + [UInt8](repeating: UInt8(thread), count: 1000 + index))
            }
        }
    }
}
