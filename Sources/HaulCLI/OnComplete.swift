import Foundation

/// `--on-complete CMD`: runs `/bin/sh -c CMD` after a download succeeds, with the file's path
/// as `$1` and in `HAUL_FILE` (and the URL, without credentials, in `HAUL_URL`). Its output is
/// the command's own; a failure is reported and does not change haul's exit code.
enum OnComplete {
    static func run(_ command: String, for job: Job, reporter: Reporter) async {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command, "haul-on-complete", job.output.path]
        var environment = ProcessInfo.processInfo.environment
        environment["HAUL_FILE"] = job.output.path
        environment["HAUL_URL"] = job.shownURL
        process.environment = environment
        do {
            try process.run()
        } catch {
            reporter.note("--on-complete could not start /bin/sh: \(error.localizedDescription)")
            return
        }
        let status: Int32 = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                process.waitUntilExit()
                continuation.resume(returning: process.terminationStatus)
            }
        }
        if status != 0 { reporter.note("--on-complete for \(job.output.lastPathComponent) exited with status \(status)") }
    }
}
