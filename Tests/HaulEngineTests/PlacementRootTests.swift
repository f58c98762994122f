import Foundation
@testable import Haul
import Synchronization
import Testing

@Suite("The placement root under concurrent use")
struct PlacementRootTests {
    @Test("Files made, published and removed by 16 threads at once in one directory all land whole")
    func concurrentNames() throws {
        let path = try Self.scratchDirectory()
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

    @Test("A call's own error comes back through the name lock: making a file in a removed directory names ENOENT")
    func errorsPassThrough() throws {
        let path = try Self.scratchDirectory()
        let root = try PlacementRoot(directory: path)
        try FileManager.default.removeItem(atPath: path)
        #expect {
            _ = try root.createFile(".x.part")
        } throws: { error in
            guard case .fileSystem(let operation, _, let code) = error as? HaulError else { return false }
            return operation == "create" && code == ENOENT
        }
    }

    @Test("Publishing over an existing file: refused without replacing; with it the new bytes land and no side name is left")
    func publishOverExisting() throws {
        let path = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let root = try PlacementRoot(directory: path)
        let destination = URL(fileURLWithPath: path).appendingPathComponent("f")
        try Data("old".utf8).write(to: destination)
        let file = try root.createFile(".f.part")
        try Array("new".utf8).withUnsafeBytes { try file.write($0, at: 0) }
        #expect {
            try root.publish(file, named: ".f.part", to: "f", replacing: false)
        } throws: { error in
            guard case .destinationExists = error as? HaulError else { return false }
            return true
        }
        #expect(try Data(contentsOf: destination) == Data("old".utf8))
        try root.publish(file, named: ".f.part", to: "f", replacing: true)
        file.close()
        #expect(try Data(contentsOf: destination) == Data("new".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: path) == ["f"])
    }

    @Test("Making a partial file over what is there: a leftover of ours is reused emptied, a held one answers as in use, a link or fifo is unlinked and never followed, a directory is refused")
    func createOverLeftovers() throws {
        let path = try Self.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let root = try PlacementRoot(directory: path)
        let directory = URL(fileURLWithPath: path)
        func inode(_ name: String) throws -> UInt64 {
            (try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(name).path)[.systemFileNumber] as? UInt64) ?? 0
        }

        // A leftover of ours: the same inode, emptied.
        try Data("old bytes".utf8).write(to: directory.appendingPathComponent(".a.part"))
        let before = try inode(".a.part")
        let reused = try root.createFile(".a.part")
        #expect(try inode(".a.part") == before)
        #expect(try Data(contentsOf: directory.appendingPathComponent(".a.part")).isEmpty)

        // Held by another download (its lock): in use, its bytes untouched.
        try Array("kept".utf8).withUnsafeBytes { try reused.write($0, at: 0) }
        #expect {
            _ = try root.createFile(".a.part")
        } throws: { error in
            guard case .fileInUse = error as? HaulError else { return false }
            return true
        }
        #expect(try Data(contentsOf: directory.appendingPathComponent(".a.part")) == Data("kept".utf8))
        reused.close()

        // A link to a file elsewhere: the link goes, its target is not written.
        let target = directory.appendingPathComponent("target")
        try Data("target".utf8).write(to: target)
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent(".b.part").path, withDestinationPath: target.path)
        let made = try root.createFile(".b.part")
        try Array("new".utf8).withUnsafeBytes { try made.write($0, at: 0) }
        made.close()
        #expect(try Data(contentsOf: target) == Data("target".utf8))
        #expect(try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(".b.part").path)[.type] as? FileAttributeType == .typeRegular)
        #expect(try Data(contentsOf: directory.appendingPathComponent(".b.part")) == Data("new".utf8))

        // A fifo: unlinked, and the create does not block on it.
        #expect(mkfifo(directory.appendingPathComponent(".c.part").path, 0o600) == 0)
        try root.createFile(".c.part").close()
        #expect(try FileManager.default.attributesOfItem(atPath: directory.appendingPathComponent(".c.part").path)[.type] as? FileAttributeType == .typeRegular)

        // A directory: refused, left alone.
        try FileManager.default.createDirectory(at: directory.appendingPathComponent(".d.part"), withIntermediateDirectories: false)
        #expect {
            _ = try root.createFile(".d.part")
        } throws: { error in
            guard case .notARegularFile = error as? HaulError else { return false }
            return true
        }
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(".d.part").path, isDirectory: &isDirectory) && isDirectory.boolValue)

        // A name that is not one component never reaches the file system.
        #expect(throws: HaulError.self) { _ = try root.createFile("sub/x.part") }
    }

    /// A new empty directory under the temporary directory; the caller removes it.
    private static func scratchDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("haul-root-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }
}
