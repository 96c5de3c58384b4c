import Backends
import Foundation
import Glibc
import NetUseCore
import Redirector
import Testing

/// What every backend owes the redirector, whatever its share: the same calls give the
/// same answers and the same errno as a local filesystem (as rclone's vfstest holds every
/// remote to one behaviour). Each backend is reached through the registry, as the daemon
/// reaches it: the local share in a fresh directory, the in-memory share, and an SMB share
/// when `NETUSE_TEST_SMB` names one (`make unit-test` starts a private smbd for it).
@Suite(.serialized) struct ShareConformanceTests {
    static let kinds = ShareKinds([MemoryShareKind()] + ShareKinds.standard.kinds)

    /// A backend on an empty share, and what to do to give it back.
    struct Subject: CustomTestStringConvertible, Sendable {
        let name: String
        let make: @Sendable () throws -> (backend: any ShareBackend, cleanUp: @Sendable () -> Void)
        var testDescription: String { name }
    }

    static let subjects: [Subject] = {
        var subjects = [
            Subject(name: "memory") { (try connect("memory:conformance"), {}) },
            Subject(name: "local") {
                let directory = FileManager.default.temporaryDirectory.appendingPathComponent("netuse-conformance-\(UUID())").path
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
                return (try connect(directory), { try? FileManager.default.removeItem(atPath: directory) })
            },
        ]
        let environment = ProcessInfo.processInfo.environment
        if let url = environment["NETUSE_TEST_SMB"] {
            for engine in SMBEngine.allCases {
            subjects.append(Subject(name: "smb (\(engine))") {
                let credentials = Credentials(user: environment["NETUSE_TEST_SMB_USER"] ?? "", password: environment["NETUSE_TEST_SMB_PASSWORD"] ?? "")
                let backend = try connect(url, credentials: credentials, engine: engine)
                // Each test works in a folder of its own: the share outlives the test.
                let folder = "conformance-\(UUID())"
                try backend.makeDirectory(folder, mode: 0o755, caller: caller)
                return (SubfolderShare(backend, folder), { backend.disconnect() })
            })
            }
        }
        return subjects
    }()

    static let caller = Caller(uid: getuid(), gid: getgid(), pid: getpid())

    static func connect(_ text: String, credentials: Credentials = Credentials(), engine: SMBEngine = .standard) throws -> any ShareBackend {
        let (kind, remote) = try kinds.parse(text)
        var request = ConnectRequest(owner: caller, identity: .of(caller), credentials: credentials, timeout: .seconds(10), workers: 2)
        request.engine = engine
        return try kind.connect(remote, request)
    }

    private func withShare(_ subject: Subject, _ body: (any ShareBackend) throws -> Void) throws {
        let (backend, cleanUp) = try subject.make()
        defer {
            if !(backend is SubfolderShare) { backend.disconnect() }
            cleanUp()
        }
        try body(backend)
    }

    /// The errno `body` fails with; nil when it does not, and -1 for anything but an errno.
    private func errno(_ body: () throws -> Void) -> Int32? {
        do {
            try body()
            return nil
        } catch {
            return (error as? Errno)?.rawValue ?? -1
        }
    }

    private func write(_ backend: any ShareBackend, _ handle: BackendHandle, _ bytes: [UInt8], at offset: off_t) throws {
        let written = try bytes.withUnsafeBytes { (buffer) throws(Errno) in try backend.write(handle, from: buffer, at: offset) }
        #expect(written == bytes.count)
    }

    private func read(_ backend: any ShareBackend, _ handle: BackendHandle, count: Int, at offset: off_t) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let got = try bytes.withUnsafeMutableBytes { (buffer) throws(Errno) in try backend.read(handle, into: buffer, at: offset) }
        return Array(bytes[..<got])
    }

    /// Closes as the redirector does: flush what was written, then close.
    private func close(_ backend: any ShareBackend, _ handle: BackendHandle) throws {
        try backend.flush(handle)
        #expect(backend.writeFailures(handle).count == 0)
        backend.close(handle)
    }

    @Test(arguments: subjects)
    func writtenBytesReadBackAndLastAfterClose(_ subject: Subject) throws {
        try withShare(subject) { backend in
            let handle = try backend.create("file", flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o644, caller: Self.caller)
            let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            try write(backend, handle, bytes, at: 0)
            try write(backend, handle, [1, 2, 3], at: 300_000)
            #expect(try read(backend, handle, count: 10, at: 199_995) == Array(bytes[199_995...]) + [0, 0, 0, 0, 0])
            try backend.sync(handle, dataOnly: false)
            #expect(try backend.attributes(of: handle).st_size == 300_003)
            try close(backend, handle)

            let again = try backend.open("file", flags: O_RDONLY)
            #expect(try read(backend, again, count: 200_000, at: 0) == bytes)
            #expect(try read(backend, again, count: 100, at: 300_000) == [1, 2, 3])
            #expect(try read(backend, again, count: 100, at: 400_000) == [])
            try close(backend, again)
            #expect(try backend.attributes(of: "file").st_size == 300_003)
            #expect(try backend.attributes(of: "file").st_mode & S_IFMT == S_IFREG)
        }
    }

    @Test(arguments: subjects)
    func truncateAndOpenTruncate(_ subject: Subject) throws {
        try withShare(subject) { backend in
            let handle = try backend.create("file", flags: O_RDWR | O_CREAT, mode: 0o644, caller: Self.caller)
            try write(backend, handle, Array(repeating: 7, count: 10_000), at: 0)
            try close(backend, handle)
            var shorter = AttributeChanges()
            shorter.size = 10
            #expect(try backend.setAttributes(shorter, of: "file", handle: nil).st_size == 10)
            var longer = AttributeChanges()
            longer.size = 20
            #expect(try backend.setAttributes(longer, of: "file", handle: nil).st_size == 20)
            let reader = try backend.open("file", flags: O_RDONLY)
            #expect(try read(backend, reader, count: 100, at: 0) == Array(repeating: 7, count: 10) + Array(repeating: 0, count: 10))
            try close(backend, reader)
            let truncating = try backend.open("file", flags: O_WRONLY | O_TRUNC)
            try close(backend, truncating)
            #expect(try backend.attributes(of: "file").st_size == 0)
        }
    }

    @Test(arguments: subjects)
    func namesAnswerAsALocalFilesystemDoes(_ subject: Subject) throws {
        try withShare(subject) { backend in
            #expect(errno { _ = try backend.attributes(of: "missing") } == ENOENT)
            #expect(errno { _ = try backend.open("missing", flags: O_RDONLY) } == ENOENT)
            #expect(errno { try backend.unlink("missing") } == ENOENT)
            try backend.makeDirectory("folder", mode: 0o755, caller: Self.caller)
            #expect(errno { try backend.makeDirectory("folder", mode: 0o755, caller: Self.caller) } == EEXIST)
            #expect(try backend.attributes(of: "folder").st_mode & S_IFMT == S_IFDIR)
            let handle = try backend.create("folder/inside", flags: O_WRONLY | O_CREAT, mode: 0o644, caller: Self.caller)
            try close(backend, handle)
            #expect(errno { _ = try backend.create("folder/inside", flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644, caller: Self.caller) } == EEXIST)
            #expect(errno { try backend.removeDirectory("folder") } == ENOTEMPTY)

            let names = try backend.list("folder").map(\.name).sorted()
            #expect(names == [".", "..", "inside"])

            try backend.rename("folder/inside", to: "moved", flags: [])
            #expect(errno { _ = try backend.attributes(of: "folder/inside") } == ENOENT)
            #expect(try backend.attributes(of: "moved").st_mode & S_IFMT == S_IFREG)
            let other = try backend.create("other", flags: O_WRONLY | O_CREAT, mode: 0o644, caller: Self.caller)
            try close(backend, other)
            #expect(errno { try backend.rename("other", to: "moved", flags: .noReplace) } == EEXIST)
            try backend.rename("other", to: "moved", flags: [])
            #expect(errno { _ = try backend.attributes(of: "other") } == ENOENT)

            try backend.unlink("moved")
            try backend.removeDirectory("folder")
            #expect(try backend.list("").map(\.name).sorted() == [".", ".."])
            #expect(try backend.statistics().f_namemax > 0)
        }
    }

    /// A backend says what it can do, and what it cannot is answered as the protocol's
    /// defaults answer: no backend invents its own refusal.
    @Test(arguments: subjects)
    func capabilitiesAreWhatTheBackendDoes(_ subject: Subject) throws {
        try withShare(subject) { backend in
            let capabilities = backend.capabilities
            let handle = try backend.create("target", flags: O_WRONLY | O_CREAT, mode: 0o644, caller: Self.caller)
            try close(backend, handle)

            let symlinked = errno { try backend.symlink(target: "target", at: "link", caller: Self.caller) }
            #expect(symlinked == (capabilities.contains(.symlinks) ? nil : EPERM))
            if capabilities.contains(.symlinks) {
                #expect(try backend.readLink("link") == "target")
            }
            #expect(errno { _ = try backend.readLink("target") } == EINVAL)

            let linked = errno { try backend.link("target", to: "hard") }
            #expect(linked == (capabilities.contains(.hardLinks) ? nil : EPERM))
            if capabilities.contains(.hardLinks) {
                #expect(try backend.attributes(of: "target").st_nlink == 2)
            }

            let fifo = errno { try backend.makeNode("fifo", mode: S_IFIFO | 0o644, device: 0, caller: Self.caller) }
            #expect(fifo == (capabilities.contains(.specialFiles) ? nil : EPERM))
        }
    }

    /// What the registry holds is what `use` can map, and a new kind is only its own type
    /// and a line there.
    @Test func theRegistryFindsEachKindByItsRemote() throws {
        #expect(try Self.kinds.parse("memory:scratch").kind.scheme == "memory")
        #expect(try Self.kinds.parse("//server/share").kind.scheme == "smb")
        #expect(try Self.kinds.parse("/srv/share").kind.scheme == "file")
    }
}

/// A folder of a share as a share of its own, so that tests on a long-lived share do not
/// meet each other's names.
final class SubfolderShare: ShareBackend {
    let backend: any ShareBackend
    let folder: String

    init(_ backend: any ShareBackend, _ folder: String) {
        self.backend = backend
        self.folder = folder
    }

    private func inside(_ path: String) -> String { path.isEmpty ? folder : folder + "/" + path }

    var capabilities: ShareCapabilities { backend.capabilities }
    func attributes(of path: String) throws(Errno) -> stat { try backend.attributes(of: inside(path)) }
    func attributes(of handle: BackendHandle) throws(Errno) -> stat { try backend.attributes(of: handle) }
    func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat {
        try backend.setAttributes(changes, of: inside(path), handle: handle)
    }
    func list(_ path: String) throws(Errno) -> [DirectoryEntry] { try backend.list(inside(path)) }
    func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle { try backend.open(inside(path), flags: flags) }
    func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle {
        try backend.create(inside(path), flags: flags, mode: mode, caller: caller)
    }
    func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try backend.read(handle, into: buffer, at: offset)
    }
    func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int {
        try backend.write(handle, from: buffer, at: offset)
    }
    func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno) { try backend.sync(handle, dataOnly: dataOnly) }
    func flush(_ handle: BackendHandle) throws(Errno) { try backend.flush(handle) }
    func writeFailures(_ handle: BackendHandle) -> WriteFailures { backend.writeFailures(handle) }
    func close(_ handle: BackendHandle) { backend.close(handle) }
    func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno) { try backend.makeDirectory(inside(path), mode: mode, caller: caller) }
    func makeNode(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno) {
        try backend.makeNode(inside(path), mode: mode, device: device, caller: caller)
    }
    func removeDirectory(_ path: String) throws(Errno) { try backend.removeDirectory(inside(path)) }
    func unlink(_ path: String) throws(Errno) { try backend.unlink(inside(path)) }
    func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno) { try backend.rename(inside(from), to: inside(to), flags: flags) }
    func symlink(target: String, at path: String, caller: Caller) throws(Errno) { try backend.symlink(target: target, at: inside(path), caller: caller) }
    func readLink(_ path: String) throws(Errno) -> String { try backend.readLink(inside(path)) }
    func link(_ existing: String, to newPath: String) throws(Errno) { try backend.link(inside(existing), to: inside(newPath)) }
    func statistics() throws(Errno) -> statvfs { try backend.statistics() }
    func disconnect() {}
}
