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
        try checkActingAsCallers()
        raiseDescriptorLimit()
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
        MountUtab.removeAll(under: root)
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
        // Clients are answered at once; drives being restored show as Restoring. The
        // service is ready once each has been tried. Neither waits on a share, and the
        // stop signals are taken meanwhile.
        server.start()
        drives.startScavenger()
        Log.info("listening on \(socketPath)")
        SystemThread.detach {
            drives.restore()
            drives.startRetrying(every: retryInterval)
            notifier.send("READY=1\nSTATUS=Serving \(socketPath)")
        }

        var set = stopSignalSet()
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        Log.info("signal \(received): stopping")
        notifier.send("STOPPING=1")
        server.stop()
        drives.shutdown()
    }

    /// The system instance makes every call on a local share as the user who asks: without
    /// the capabilities to switch a thread's identity (CAP_SETUID, CAP_SETGID) it would act
    /// as root for everyone, so it does not start.
    private static func checkActingAsCallers() throws(StartError) {
        guard ThreadCredentials.canSwitch else { return }
        let nobody = Identity(uid: 65534, gid: 65534, groups: [65534])
        do {
            try ThreadCredentials.assume(nobody)
            try ThreadCredentials.assume(ThreadCredentials.daemon)
        } catch {
            throw .setup("cannot act as the users it serves (setfsuid, setgroups: \(error)); give it CAP_SETUID and CAP_SETGID")
        }
    }

    /// Every open file and deferred handle of every user is a descriptor of this process:
    /// take all the system allows (the unit sets LimitNOFILE).
    private static func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
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

    /// Makes the directory and those above it. A user's own instance keeps its directory
    /// private (0700) and refuses one it does not own or that others may enter, such as a
    /// `/tmp` fallback somebody else made first.
    public static func prepare(root: String) throws(StartError) {
        var path = ""
        for component in root.split(separator: "/") {
            path += "/" + component
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                throw .setup("cannot make \(path): \(Errno.current)")
            }
        }
        if geteuid() != 0 {
            var attributes = stat()
            if lstat(root, &attributes) == 0, attributes.st_uid == geteuid(), attributes.st_mode & S_IFMT == S_IFDIR {
                chmod(root, 0o700)
            }
            guard InstancePaths.isPrivate(root, to: geteuid()) else {
                throw .setup("\(root) is not a directory of this user's that only they may use")
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
