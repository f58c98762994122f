import Benchmark
import Foundation
@_spi(Benchmarks) import Haul
import HaulTestServer

let benchmarks: @Sendable () -> Void = {
    let quick = Benchmark.Configuration(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                        maxDuration: .seconds(2), maxIterations: 1_000)

    Benchmark("SegmentPlan: 1 GiB over 16 connections, finish and steal to the end", configuration: quick) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(EngineBenchmarks.planAndSteal(length: 1 << 30, connections: 16, minimumSplit: 1 << 20))
        }
    }

    Benchmark("DownloadStateMachine: 256 MiB, 16 connections, 128 KiB writes", configuration: quick) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(EngineBenchmarks.runStateMachine(length: 256 << 20, connections: 16, chunk: 128 << 10))
        }
    }

    // One iteration hashes 64 MiB: MB/s = throughput (iterations/s) × 67.1.
    Benchmark("SHA-256 (OpenSSL EVP), 64 MiB per iteration",
              configuration: .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(3), maxIterations: 50)) { benchmark in
        let buffer = [UInt8](repeating: 0x5A, count: 64 << 20)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(EngineBenchmarks.sha256(buffer))
        }
    }

    Benchmark("ResumeData: encode and decode a 16-segment blob", configuration: quick) { benchmark in
        let sample = EngineBenchmarks.sampleResumeData(segments: 16)
        for _ in benchmark.scaledIterations {
            let data = sample.encoded()
            blackHole(try? ResumeData(data))
        }
    }

    Benchmark("Loopback download: 256 MiB, 16 connections, SHA-256 on",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal, .peakMemoryResident],
                                   maxDuration: .seconds(20), maxIterations: 5)) { benchmark in
        let server = try await TestServer.start()
        let content = GeneratedContent(size: 256 << 20, seed: 1)
        server.serve(ServedFile(content: content, etag: "\"bench\""), at: "/bench.bin")
        var configuration = DownloadSession.Configuration()
        configuration.syncsBeforeMove = false
        let session = DownloadSession(configuration: configuration)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("haul-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            let (location, _) = try await session.download(from: server.url("/bench.bin"),
                                                            to: directory.appendingPathComponent("\(index)"))
            blackHole(location)
        }
        benchmark.stopMeasurement()
        await server.shutdown()
    }
}
