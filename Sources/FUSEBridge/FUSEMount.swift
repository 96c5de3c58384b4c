import CFuse
import Glibc
import NetUseCore
import Redirector

/// One drive's FUSE session: mounted at creation, served by libfuse's multi-threaded loop
/// on threads of its own, torn down by `close` once the kernel has let go of it.
public final class FUSEMount: @unchecked Sendable {
    // @unchecked: the session pointer is written once here and used by the loop thread and
    // by `close`, which runs only after that thread has ended.
    public let mountpoint: String
    /// The mount source the mount table shows (`fsname`, made safe).
    public let source: String
    private let session: OpaquePointer
    private let context: Unmanaged<MountContext>
    private let loop: SystemThread

    public init(redirector: Redirector, mountpoint: String, fileSystemName: String, allowOther: Bool) throws(Errno) {
        self.mountpoint = mountpoint
        // The name comes from users: it is written so that it holds no comma, backslash or
        // other byte the option parser or the mount table reads as syntax, and the options
        // that keep the mount safe come last, where nothing before them can undo them.
        source = Self.safeName(fileSystemName)
        var options = "fsname=\(source),subtype=netuse"
        if allowOther { options += ",allow_other" }
        options += ",default_permissions,nosuid,nodev"
        let strings = ["netused", "-o", options]
        let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() { argv[index] = strdup(string) }
        argv[strings.count] = nil
        defer {
            for index in 0..<strings.count { free(argv[index]) }
            argv.deallocate()
        }
        var args = fuse_args(argc: Int32(strings.count), argv: argv, allocated: 0)
        var operations = FUSEOperations.table()
        let mountContext = MountContext(redirector: redirector)
        context = Unmanaged.passRetained(mountContext)
        guard let session = fuse_session_new(&args, &operations, MemoryLayout<fuse_lowlevel_ops>.size, context.toOpaque()) else {
            fuse_opt_free_args(&args)
            context.release()
            throw Errno(EINVAL)
        }
        fuse_opt_free_args(&args)
        guard fuse_session_mount(session, mountpoint) == 0 else {
            fuse_session_destroy(session)
            context.release()
            throw Errno(EIO)
        }
        self.session = session
        // Before the loop's thread exists, which is what orders it before every request.
        mountContext.session = session
        let sessionAddress = UInt(bitPattern: session)
        // A lease break, on the share's thread: no request of this node is held up by it.
        redirector.setKernelInvalidation { node in
            _ = fuse_lowlevel_notify_inval_inode(OpaquePointer(bitPattern: sessionAddress)!, node, 0, 0)
        }
        loop = SystemThread {
            let session = OpaquePointer(bitPattern: sessionAddress)!
            let config = fuse_loop_cfg_create()
            fuse_loop_cfg_set_max_threads(config, 16)
            fuse_loop_cfg_set_clone_fd(config, 0)
            _ = fuse_session_loop_mt(session, config)
            fuse_loop_cfg_destroy(config)
        }
    }

    /// The mount source as the mount table shows it: printable ASCII but for the bytes
    /// option strings and mountinfo treat as syntax, which are percent-encoded.
    static func safeName(_ name: String) -> String {
        name.percentEncoded { $0 > 0x20 && $0 < 0x7f && !",\\%#\"'=".utf8.contains($0) }
    }

    /// Waits for the loop to end (the mount is gone, or the kernel connection closed),
    /// then frees the session. Call once, after `MountTable.unmount` succeeded.
    public func close() {
        loop.join()
        context.takeUnretainedValue().redirector.setKernelInvalidation(nil)
        fuse_session_unmount(session)
        fuse_session_destroy(session)
        context.release()
    }

    /// Makes the kernel drop what it cached of these nodes, so that their next read asks
    /// the daemon (and, after a forced delete, gets EIO) instead of the page cache.
    public func invalidate(nodes: [UInt64]) {
        for node in Set(nodes) { _ = fuse_lowlevel_notify_inval_inode(session, node, 0, 0) }
    }

    /// For shutdown with users still on the drive: detached mounts end with the process.
    public func abandon() {
        fuse_session_exit(session)
    }
}

/// What a request reaches through its userdata: the drive, and the session that lets a
/// reply be followed by a notice to the kernel.
final class MountContext: @unchecked Sendable {
    // @unchecked: `session` is written once, before the loop thread that reads it starts.
    let redirector: Redirector
    var session: OpaquePointer?

    init(redirector: Redirector) { self.redirector = redirector }
}
