/// A `Range` request header as the test server understands it: one `bytes=` range.
enum RangeRequest: Equatable {
    /// No header, or one the server ignores (multiple ranges, other units, malformed).
    case none
    case satisfiable(Range<Int64>)
    /// Starts at or past the end: answered with `416` and `Content-Range: bytes */size`.
    case unsatisfiable

    init(header: String, size: Int64) {
        let value = header.trimmingCharacters(in: .whitespaces)
        guard value.hasPrefix("bytes="), !value.contains(",") else { self = .none; return }
        let parts = value.dropFirst("bytes=".count).split(separator: "-", maxSplits: 1,
                                                            omittingEmptySubsequences: false)
        guard parts.count == 2 else { self = .none; return }
        if parts[0].isEmpty {
            guard let suffix = Int64(parts[1]), suffix > 0 else { self = .none; return }
            self = size == 0 ? .unsatisfiable : .satisfiable(Swift.max(0, size - suffix)..<size)
            return
        }
        guard let first = Int64(parts[0]) else { self = .none; return }
        var last = size - 1
        if !parts[1].isEmpty {
            guard let given = Int64(parts[1]), given >= first else { self = .none; return }
            last = Swift.min(given, size - 1)
        }
        self = first < size ? .satisfiable(first..<(last + 1)) : .unsatisfiable
    }
}

import Foundation
