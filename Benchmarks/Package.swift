// swift-tools-version: 6.1
import Foundation
import PackageDescription

// A path dependency is known by its directory's name, which depends on where the clone lives.
let haulPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent

// The benchmark harness is its own package so the library never depends on it.
let package = Package(
    name: "HaulBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "HaulBenchmarks",
            dependencies: [
                .product(name: "Haul", package: haulPackage),
                .product(name: "HaulTestServer", package: haulPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/HaulBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
