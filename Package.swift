// swift-tools-version: 6.0
import PackageDescription

// The linker flags below name a file of this package: by absolute path, whichever directory the
// build runs in.
let packageRoot = "/" + #filePath.split(separator: "/").dropLast().joined(separator: "/")

let package = Package(
    name: "Haul",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Haul", targets: ["Haul"]),
        // Test-only: the in-process server the tests, the benchmark package and `haul demo` use.
        // Not part of Haul's API (documented as such in the README); applications use `Haul`.
        .library(name: "HaulTestServer", targets: ["HaulTestServer"]),
        .executable(name: "haul", targets: ["HaulCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-structured-headers.git", exact: "1.7.0"),
    ],
    targets: [
        // C at the edge: typed forwarders for libcurl's variadic calls.
        .target(
            name: "CCurl",
            linkerSettings: [.linkedLibrary("curl")]
        ),
        // C at the edge: Linux calls the Glibc module does not export (fallocate, mallopt).
        .target(name: "CHaulSystem"),
        // Module map over libcrypto (OpenSSL EVP) for SHA-256.
        .systemLibrary(name: "COpenSSL"),
        .target(
            name: "Haul",
            dependencies: [
                "CCurl",
                "CHaulSystem",
                "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "RawStructuredFieldValues", package: "swift-http-structured-headers"),
            ]
        ),
        // The haul daemon: a durable queue served over aria2's JSON-RPC (SwiftNIO). Never in `Haul`.
        .target(
            name: "HaulDaemon",
            dependencies: [
                "Haul",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "HaulCLI",
            dependencies: [
                "Haul",
                "CHaulSystem",
                "HaulDaemon",
                "HaulTestServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Linked with lld and packed relative relocations (glibc 2.36+): the loader reads a
            // few KiB of relocations instead of 2 MiB at every start, and the command stays
            // about 3 MiB smaller in memory. The functions a download runs (Linker/haul.order,
            // written by `make symbol-order`) are placed together: about 5 MiB less of the
            // binary's code is resident (docs/benchmarks.md, peak RSS). Names the list has and
            // the code no longer has are passed over.
            linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                                           "-Xlinker", "--symbol-ordering-file=\(packageRoot)/Linker/haul.order",
                                           "-Xlinker", "--no-warn-symbol-ordering"],
                                          .when(platforms: [.linux]))]
        ),
        // In-process HTTP/1.1 server for tests, benchmarks and the demo. Never used by Haul itself.
        .target(
            name: "HaulTestServer",
            dependencies: [
                "Haul",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // A URLSession download sample ported with only the README's renames, run for real.
        .testTarget(
            name: "HaulPortTests",
            dependencies: ["Haul", "HaulTestServer"],
            exclude: ["URLSessionSample.swift.txt"]
        ),
        .testTarget(
            name: "HaulEngineTests",
            dependencies: ["Haul"]
        ),
        .testTarget(
            name: "HaulIntegrationTests",
            dependencies: ["Haul", "HaulDaemon", "HaulTestServer"],
            // Fault scenarios as data and the pseudo-terminal driver, read at run time next to the test sources.
            exclude: ["Scenarios", "RPC", "Terminal"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
