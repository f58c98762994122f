/// The table a batch ends with: one row per download with its size, time, speed (of the bytes
/// this run fetched) and how it ended.
enum ResultsTable {
    static func render(_ jobs: [Job]) -> [String] {
        let header = ["NAME", "SIZE", "TIME", "SPEED", "STATUS"]
        let rows: [[String]] = jobs.map { job in
            let name = job.output.lastPathComponent
            guard let outcome = job.outcome else { return [name, "-", "-", "-", "not started"] }
            let size = outcome.bytes.map(Format.bytes) ?? "-"
            let time = Format.seconds(outcome.seconds)
            let fetched = outcome.bytesThisRun ?? outcome.bytes ?? 0
            let speed = outcome.succeeded && outcome.seconds > 0
                ? Format.bytes(Int64(Double(fetched) / outcome.seconds)) + "/s" : "-"
            return [ProgressLine.shorten(name, to: 40), size, time, speed, outcome.message]
        }
        let all = [header] + rows
        let widths = (0..<header.count).map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, text in
                column == row.count - 1 ? text : text.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
    }
}
