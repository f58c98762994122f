/// One download's progress as a line that fits the terminal: the name shortened in the middle,
/// a bar that takes what room is left, and the figures dropped least-useful first when even
/// they do not fit, so a redraw never wraps and always replaces itself.
enum ProgressLine {
    /// `name` in at most `width` characters, shortened in the middle (`long-na…me.iso`) so the
    /// start and the extension both stay.
    static func shorten(_ name: String, to width: Int) -> String {
        guard name.count > width else { return name }
        guard width > 1 else { return String(name.prefix(max(width, 0))) }
        let tail = (width - 1) / 2
        let head = width - 1 - tail
        return String(name.prefix(head)) + "…" + String(name.suffix(tail))
    }

    /// The line for a download of `total` bytes (≤ 0: unknown) with `done` so far, at most
    /// `width - 1` characters (the last column stays empty: some terminals wrap on it).
    static func render(name: String, done: Int64, total: Int64, bytesPerSecond: Double?, connections: Int,
                       width: Int) -> String {
        let room = max(width - 1, 1)
        let known = total > 0
        let percent = known ? "\(min(100, Int(Double(done) / Double(total) * 100)))%".leftPadded(to: 4) : nil
        let sizes = known ? "\(Format.bytes(done))/\(Format.bytes(total))" : Format.bytes(done)
        let speed = bytesPerSecond.map { "\(Format.bytes(Int64($0)))/s" } ?? "--/s"
        let eta: String? = known ? "ETA " + (bytesPerSecond.flatMap { $0 > 1 ? Format.duration(Double(total - done) / $0) : nil } ?? "--:--") : nil
        let connections = "x\(connections)"
        // Least useful first: what goes when the line is too narrow.
        var figures: [(key: String, text: String?)] = [("percent", percent), ("sizes", sizes), ("speed", speed),
                                                       ("eta", eta), ("connections", connections)]
        let dropOrder = ["connections", "sizes", "eta", "speed", "percent"]
        let minimumName = min(name.count, 12)
        var showsBar = known
        func tail() -> String { figures.compactMap(\.text).joined(separator: " ") }
        func needed() -> Int { minimumName + 1 + (showsBar ? 8 : 0) + tail().count }
        var dropped = 0
        while needed() > room {
            if showsBar {
                showsBar = false
            } else if dropped < dropOrder.count {
                let key = dropOrder[dropped]
                if let index = figures.firstIndex(where: { $0.key == key }) { figures[index].text = nil }
                dropped += 1
            } else {
                break
            }
        }
        let figuresText = tail()
        let nameAndBar = room - (figuresText.isEmpty ? 0 : figuresText.count + 1)
        var barText = ""
        if showsBar {
            // The name keeps up to a third of the line (all of it if short), the bar up to 30.
            let nameWidth = min(name.count, max(minimumName, room / 3))
            let barWidth = min(30, nameAndBar - nameWidth - 3)
            if barWidth >= 5 {
                let filled = Int(Double(barWidth) * min(1, Double(done) / Double(total)))
                barText = "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled) + "]"
            }
        }
        let nameRoom = max(1, nameAndBar - (barText.isEmpty ? 0 : barText.count + 1))
        var line = shorten(name, to: nameRoom)
        line += String(repeating: " ", count: max(0, nameRoom - line.count))
        if !barText.isEmpty { line += " " + barText }
        if !figuresText.isEmpty { line += " " + figuresText }
        return String(line.prefix(room))
    }
}

extension String {
    /// The string right-aligned in `width` characters.
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
