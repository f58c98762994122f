import ArgumentParser

extension HaulCommand {
    /// `haul demo`: a first run on an embedded loopback server.
    struct Demo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the speedup of many connections on an embedded, throttled loopback server."
        )

        func run() async throws {
            print("haul demo: not yet — the demo arrives with the command-line issue. Try `make test`.")
        }
    }
}
