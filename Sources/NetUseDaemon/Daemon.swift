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
    /// `stateDirectory` keeps the persistent drives (nil: none are kept).
    public static func run(root: String, stateDirectory: String?, retryInterval: Duration) throws(StartError) {
        let notifier = ServiceNotifier(environment: InstancePaths.environment())
        umask(0)  // modes come from the kernel with the caller's umask already applied
        try prepare(root: root)
        if let stateDirectory {
            try prepare(root: stateDirectory)
            chmod(stateDirectory, 0o700)
        }
        for stale in MountTable.netuseMounts(under: root) {
            MountTable.detach(stale)
            rmdir(stale)
            Log.warning("cleaned up stale mount \(stale) left by an earlier instance")
        }
        let socketPath = InstancePaths.socket(inRoot: root)
        try removeStaleSocket(socketPath)
        let drives = DriveManager(root: root, store: stateDirectory.map { DriveRecords(directory: $0) })
        let server: ControlServer
        do {
            // The system instance takes every local user (each request is checked by uid);
            // a user's own instance takes that user only.
            server = try ControlServer(path: socketPath, mode: geteuid() == 0 ? 0o666 : 0o600, drives: drives)
        } catch {
            throw .setup("cannot listen on \(socketPath): \(error)")
        }
        // Clients may connect already (the socket listens); they are answered once the
        // persistent drives are back, and only then is the service ready.
        drives.restore()
        server.start()
        drives.startScavenger()
        drives.startRetrying(every: retryInterval)
        Log.info("listening on \(socketPath)")
        notifier.send("READY=1\nSTATUS=Serving \(socketPath)")

        var set = stopSignalSet()
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        Log.info("signal \(received): stopping")
        notifier.send("STOPPING=1")
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

    /// The default state directory: /var/lib/netuse for root, $XDG_STATE_HOME/netuse (or
    /// ~/.local/state/netuse) for anyone else.
    public static func defaultStateDirectory(environment: [String: String]) -> String? {
        if geteuid() == 0 { return "/var/lib/netuse" }
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/netuse" }
        if let home = environment["HOME"], home.hasPrefix("/") { return home + "/.local/state/netuse" }
        return nil
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
