// A plain Foundation URLSession download, as a peer in Benchmarks/compare.py:
//     urlsession-download URL OUTPUT
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

let arguments = CommandLine.arguments
guard arguments.count == 3, let url = URL(string: arguments[1]) else {
    FileHandle.standardError.write(Data("usage: urlsession-download URL OUTPUT\n".utf8))
    exit(64)
}
let output = URL(fileURLWithPath: arguments[2])
let done = DispatchSemaphore(value: 0)
nonisolated(unsafe) var failure: String?
let task = URLSession.shared.downloadTask(with: url) { location, response, error in
    if let error {
        failure = "\(error)"
    } else if let status = (response as? HTTPURLResponse)?.statusCode, status != 200 {
        failure = "HTTP \(status)"
    } else if let location {
        do {
            try? FileManager.default.removeItem(at: output)
            try FileManager.default.moveItem(at: location, to: output)
        } catch {
            failure = "\(error)"
        }
    }
    done.signal()
}
task.resume()
done.wait()
if let failure {
    FileHandle.standardError.write(Data("urlsession-download: \(failure)\n".utf8))
    exit(1)
}
