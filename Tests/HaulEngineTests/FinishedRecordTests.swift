import Foundation
@testable import Haul
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("The record a finished download leaves on its file", .enabled(if: FinishedRecord.canBeKept(in: NSTemporaryDirectory()),
                                                                    "the temporary directory keeps no user attributes"))
struct FinishedRecordTests {
    static let url = URL(string: "http://127.0.0.1:1/dir/file.bin?token=secret")!

    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "haul-record-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    /// A file of `bytes` at `path`, with `record` set on it when given.
    static func make(_ path: String, _ bytes: [UInt8], record: FinishedRecord?) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        guard let record else { return }
        let fd = open(path, O_RDWR | O_CLOEXEC)
        defer { close(fd) }
        #expect(record.write(to: fd), "the file system here keeps no user attributes")
    }

    static func digest(_ bytes: [UInt8]) -> String {
        var hash = SHA256()
        hash.update(bytes)
        return hash.finalizeHex()
    }

    @Test("A record keeps the URL only as a digest, reads back equal, and anything malformed is no record")
    func storedForm() throws {
        let record = FinishedRecord(url: Self.url, length: 5, sha256: Self.digest([1, 2, 3, 4, 5]), etag: "\"e\"",
                                    lastModified: "Sun, 06 Nov 1994 08:49:37 GMT")
        let stored = try #require(record.encoded())
        #expect(!String(decoding: stored, as: UTF8.self).contains("secret"))
        #expect(!String(decoding: stored, as: UTF8.self).contains("127.0.0.1"))
        #expect(FinishedRecord(stored: stored) == record)
        #expect(record.isFrom(Self.url))
        #expect(record.isFrom(URL(string: "http://user:pw@127.0.0.1:1/dir/file.bin?token=secret")!), "credentials are not the URL")
        #expect(!record.isFrom(URL(string: "http://127.0.0.1:1/dir/file.bin?token=other")!))

        let valid = try #require(JSONSerialization.jsonObject(with: stored) as? [String: Any])
        let broken: [(String, Any)] = [
            ("version", 2), ("sha256", String(repeating: "A", count: 64)), ("sha256", "abc"),
            ("url", String(repeating: "g", count: 64)), ("length", -1), ("length", "5"),
        ]
        for (key, value) in broken {
            var fields = valid
            fields[key] = value
            let data = try JSONSerialization.data(withJSONObject: fields)
            #expect(FinishedRecord(stored: data) == nil, "\(key): \(value)")
        }
        #expect(FinishedRecord(stored: Data("not json".utf8)) == nil)
        let long = FinishedRecord(url: Self.url, length: 5, sha256: record.sha256, etag: String(repeating: "x", count: 4000),
                                  lastModified: nil)
        #expect(long.encoded() == nil, "too large to store is not stored")
    }

    @Test("A file is an earlier download only with a record of one of its URLs; its bytes are hashed as they are now")
    func earlierDownload() throws {
        let directory = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let record = FinishedRecord(url: Self.url, length: Int64(bytes.count), sha256: Self.digest(bytes), etag: "\"e\"",
                                    lastModified: nil)
        let path = directory + "/f.bin"
        try Self.make(path, bytes, record: record)

        let found = try #require(EarlierDownload.at(path, from: [URL(string: "http://127.0.0.1:1/other")!, Self.url]))
        #expect(found.record == record)
        #expect(found.size == Int64(bytes.count) && found.links == 1 && found.owner == getuid())
        #expect(found.matchesRecord(stop: { false }) == true)
        #expect(found.matchesRecord(stop: { true }) == nil, "given up when told to stop")
        #expect(found.bytes(at: 299_990, count: 10) == Array(bytes[299_990...]))
        #expect(found.bytes(at: 299_995, count: 10) == nil, "past the end")
        #expect(found.isStill(at: path))
        #expect(EarlierDownload.at(path, from: [URL(string: "http://127.0.0.1:1/other")!]) == nil, "another URL's file")

        // Changed in place: the record stays, and says the bytes are no longer its own.
        var changed = bytes
        changed[150_000] ^= 1
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        _ = changed.withUnsafeBytes { pwrite(fd, $0.baseAddress! + 150_000, 1, 150_000) }
        close(fd)
        #expect(EarlierDownload.at(path, from: [Self.url])?.matchesRecord(stop: { false }) == false)
        #expect(found.matchesRecord(stop: { false }) == false, "read through the same descriptor")
        // Written in place, even with the byte it had: no longer the file that was checked.
        let again = try #require(EarlierDownload.at(path, from: [Self.url]))
        #expect(again.isStill(at: path))
        usleep(20_000)
        let writer = open(path, O_WRONLY | O_CLOEXEC)
        _ = changed.withUnsafeBytes { pwrite(writer, $0.baseAddress! + 10, 1, 10) }
        close(writer)
        #expect(!again.isStill(at: path), "a write in place while it was checked")
        // Another file under the name: the one opened is no longer there.
        try FileManager.default.removeItem(atPath: path)
        try Self.make(path, bytes, record: record)
        #expect(!found.isStill(at: path))

        // No record, a link to a file with one, a directory, a fifo: none is an earlier download.
        try Self.make(directory + "/plain.bin", bytes, record: nil)
        #expect(EarlierDownload.at(directory + "/plain.bin", from: [Self.url]) == nil)
        try Self.make(directory + "/target.bin", bytes, record: record)
        #expect(symlink(directory + "/target.bin", directory + "/link.bin") == 0)
        #expect(EarlierDownload.at(directory + "/link.bin", from: [Self.url]) == nil)
        #expect(mkdir(directory + "/dir.bin", 0o700) == 0)
        #expect(EarlierDownload.at(directory + "/dir.bin", from: [Self.url]) == nil)
        #expect(mkfifo(directory + "/fifo.bin", 0o600) == 0)
        #expect(EarlierDownload.at(directory + "/fifo.bin", from: [Self.url]) == nil, "and no hang")
    }
}
