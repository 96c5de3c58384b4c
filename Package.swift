// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "netuse",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "netused", targets: ["netused"]),
        .executable(name: "netusectl", targets: ["netusectl"]),
        .executable(name: "netuse-smb-worker", targets: ["netuse-smb-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CLinux"),
        .systemLibrary(name: "CGSSAPI", providers: [.apt(["libkrb5-dev"])]),
        .systemLibrary(name: "CNettle", pkgConfig: "nettle", providers: [.apt(["nettle-dev"])]),
        .systemLibrary(name: "CSMBClient", pkgConfig: "smbclient", providers: [.apt(["libsmbclient-dev"])]),
        .target(name: "NetUseCore", dependencies: ["CLinux"]),
        .target(name: "Redirector", dependencies: ["NetUseCore", "CLinux"]),
        .target(name: "SMB2", dependencies: ["NetUseCore", "CNettle", "CGSSAPI"]),
        .target(name: "Backends", dependencies: ["Redirector", "NetUseCore", "SMB2", "CLinux"]),
        .target(name: "FUSEBridge", dependencies: ["Redirector", "CFuse"]),
        .target(name: "NetUseDaemon", dependencies: ["NetUseCore", "Redirector", "Backends", "FUSEBridge"]),
        .executableTarget(name: "netused", dependencies: [
            "NetUseDaemon", "CLinux",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "netuse-smb-worker", dependencies: ["NetUseCore", "CSMBClient"]),
        .executableTarget(name: "netusectl", dependencies: [
            "NetUseCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "NetUseCoreTests", dependencies: ["NetUseCore"]),
        .testTarget(name: "RedirectorTests", dependencies: ["Redirector"]),
        .testTarget(name: "BackendsTests", dependencies: ["Backends"]),
        .testTarget(name: "SMB2Tests", dependencies: ["SMB2"]),
        .testTarget(name: "NetUseDaemonTests", dependencies: ["NetUseDaemon"]),
        .testTarget(name: "FUSEBridgeTests", dependencies: ["FUSEBridge"]),
    ],
    swiftLanguageModes: [.v6]
)
