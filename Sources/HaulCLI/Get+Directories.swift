import Foundation
import Haul

extension HaulCommand.Get {
    /// Makes the directories `-d` and `-o` name when they are missing, as aria2c does: through
    /// the placement owner, never through a symbolic link; a link or file in the way is an error
    /// naming it.
    func makeOutputDirectories(_ reporter: Reporter) throws {
        var wanted: [String] = []
        if let dir { wanted.append(dir) }
        if let output, output != "-", output.contains("/") {
            let parent = (output as NSString).deletingLastPathComponent
            wanted.append(parent.isEmpty ? "/" : parent)
        }
        for directory in wanted {
            do {
                _ = try PlacementRoot.makingDirectories(directory)
            } catch {
                reporter.error(error.description)
                throw ExitStatus.diskError.code
            }
        }
    }
}
