import COpenSSL

/// Incremental SHA-256 through OpenSSL's EVP interface (libcrypto).
///
/// A non-copyable owner of one `EVP_MD_CTX`: feed bytes with `update`, read the digest once
/// with `finalize`.
package struct SHA256: ~Copyable {
    private let context: OpaquePointer

    /// A fresh hash context.
    package init() {
        guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            fatalError("OpenSSL could not create a SHA-256 context (out of memory?)")
        }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Adds bytes to the hash.
    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    /// Adds the bytes of any contiguous collection.
    package mutating func update<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        if let done: Void = bytes.withContiguousStorageIfAvailable({ update(UnsafeRawBufferPointer($0)) }) {
            return done
        }
        let copy = Array(bytes)
        copy.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest. Consumes the hash.
    package consuming func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        digest.withUnsafeMutableBufferPointer { _ = EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return Array(digest.prefix(Int(length)))
    }

    /// The digest as lowercase hex.
    package consuming func finalizeHex() -> String {
        finalize().hexString
    }

    /// SHA-256 of a whole file read with a fixed buffer (bounded memory), as lowercase hex.
    package static func hex(ofFileAt path: String) throws(HaulError) -> String {
        let fd = retryingInterrupts { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw DataFile.error("open", path, errno) }
        defer { _ = close(fd) }
        return try hex(ofDescriptor: fd, path: path)
    }

    /// SHA-256 of the whole open file `fd` (`path` names it in errors), read with `pread` so the
    /// descriptor's offset is left alone. `stop` is asked before each 1 MiB read; when it says
    /// to stop, the hash fails as `cancelled`.
    package static func hex(ofDescriptor fd: Int32, path: String, stop: () -> Bool = { false }) throws(HaulError) -> String {
        var hash = SHA256()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var position: Int64 = 0
        while true {
            if stop() { throw .cancelled }
            let count = retryingInterrupts { pread(fd, buffer.baseAddress, buffer.count, off_t(position)) }
            if count < 0 { throw DataFile.error("read", path, errno) }
            if count == 0 { break }
            hash.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            position += Int64(count)
        }
        return hash.finalizeHex()
    }
}

extension Sequence where Element == UInt8 {
    /// Lowercase hexadecimal digits, two per byte.
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in self {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
