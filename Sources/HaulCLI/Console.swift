import Foundation

/// The command's one way to write text, unbuffered, so progress redraws, results and errors
/// keep their order even when output is a pipe.
enum Console {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
