import FUSEBridge
import Glibc
import NetUseCore

/// One netused instance: its root directory, its drives and its control socket.
public enum Daemon {
    public enum StartError: Error, CustomStringConvertible {
        case setup(String)
        public var description: String {
            switch self { case .setup(let text): return text }
        }
    }

    /// Must run before any other thread exists: the signals that stop the daemon are
    /// blocked in every thread and taken by `run`'s sigwait alone.
    public static func takeSignals() {
        signal(SIGPIPE, SIG_IGN)
        // A daemon started in the background by a non-interactive shell inherits SIGINT
        // ignored; an ignored signal would never reach sigwait.
        for stop in stopSignals { signal(stop, SIG_DFL) }
        var set = stopSignalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Serves until SIGTERM or SIGINT, then takes every drive down and returns.
    public static func run(root: String) throws(StartError) {
        umask(0)  // modes come from the kernel with the caller's umask already applied
        try prepare(root: root)
        for stale in MountTable.netuseMounts(under: root) {
            MountTable.detach(stale)
            rmdir(stale)
            Log.warning("cleaned up stale mount \(stale) left by an earlier instance")
        }
        let socketPath = InstancePaths.socket(inRoot: root)
        try removeStaleSocket(socketPath)
        let drives = DriveManager(root: root)
        let server: ControlServer
        do {
            // The system instance takes every local user (each request is checked by uid);
            // a user's own instance takes that user only.
            server = try ControlServer(path: socketPath, mode: geteuid() == 0 ? 0o666 : 0o600, drives: drives)
        } catch {
            throw .setup("cannot listen on \(socketPath): \(error)")
        }
        server.start()
        drives.startScavenger()
        Log.info("listening on \(socketPath)")

        var set = stopSignalSet()
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        Log.info("signal \(received): stopping")
        server.stop()
        drives.shutdown()
    }

    private static let stopSignals = [SIGTERM, SIGINT, SIGHUP]

    private static func stopSignalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for stop in stopSignals { sigaddset(&set, stop) }
        return set
    }

    public static func prepare(root: String) throws(StartError) {
        var path = ""
        for component in root.split(separator: "/") {
            path += "/" + component
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                throw .setup("cannot make \(path): \(Errno.current)")
            }
        }
    }

    /// A socket file left by a killed instance is removed; one that answers belongs to a
    /// live instance, which this one must not steal.
    private static func removeStaleSocket(_ path: String) throws(StartError) {
        if let fd = try? UnixSocket.connect(path: path) {
            close(fd)
            throw .setup("another netused is already listening on \(path)")
        }
        unlink(path)
    }
}
