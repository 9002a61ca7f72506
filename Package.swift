// swift-tools-version:6.0
// Fusion: a Swift testbed for unified multimodal models (Chameleon, Show-o, Transfusion) on one core.
import PackageDescription

let package = Package(
    name: "Fusion",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Fusion", targets: ["Fusion"]),
        .executable(name: "fusion", targets: ["Experiments"]),
        .executable(name: "bench", targets: ["bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // Thin shims over the C libraries Debian ships; only one Swift file per library imports each.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // Open MPI, for data-parallel training under mpirun or srun (initialised only under a launcher).
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "Fusion", dependencies: ["CBLAS", "CHDF5", "CPNG", "CZlib", "CMPI"],
                // The machines are x86-64 with AVX2 and FMA (scripts/setup checks): let the eight-lane
                // SIMD loops compile to single AVX instructions instead of pairs of SSE ones.
                swiftSettings: [.unsafeFlags(["-target-cpu", "haswell"])]),
        .executableTarget(name: "Experiments",
                          dependencies: ["Fusion", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Yams", package: "Yams")]),
        .executableTarget(name: "bench", dependencies: ["Fusion"]),
        // Tests reach the command's own logic (metrics, config loading) with `@testable import Experiments`.
        .testTarget(name: "FusionTests", dependencies: ["Fusion", "Experiments"]),
    ],
    swiftLanguageModes: [.v5]
)
