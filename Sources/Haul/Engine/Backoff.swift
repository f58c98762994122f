/// Retry delay for a segment: exponential backoff with "equal jitter".
///
/// Attempt `n` (1-based) waits between half and all of `min(cap, base × 2^(n-1))`; the random
/// half spreads retries of many segments so they do not hit the server in one burst. A server's
/// `Retry-After` is a floor, never shortened by jitter.
enum Backoff {
    /// - Parameters:
    ///   - attempt: 1 for the first retry.
    ///   - jitter: a number in `0..<1` (random in production, fixed in tests).
    ///   - retryAfter: the server's `Retry-After` in seconds, if it sent one.
    static func delay(attempt: Int, base: Duration, cap: Duration, jitter: Double,
                      retryAfter: Int? = nil) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        var ceiling = base * (1 << exponent)
        if ceiling > cap { ceiling = cap }
        let jittered = ceiling * (0.5 + 0.5 * min(max(jitter, 0), 1))
        if let retryAfter, retryAfter > 0 {
            // Honour the server but keep it bounded by the cap × 4 so a hostile value cannot hang us.
            let floor = min(Duration.seconds(retryAfter), cap * 4)
            return max(jittered, floor)
        }
        return jittered
    }
}
