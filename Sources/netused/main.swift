import ArgumentParser
import CLinux
import Glibc
import NetUseCore
import NetUseDaemon

struct Netused: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netused",
        abstract: "The netuse daemon: maps shares to drive letters as FUSE mounts.",
        discussion: "A user's drive q is mounted at ROOT/UID/q (a global one at ROOT/global/q); clients talk to ROOT/control.sock. Run as root, it acts as each caller on local shares.",
        version: NetUseVersion.current)

    @Option(help: "The instance's directory (default: /run/netuse for root, $XDG_RUNTIME_DIR/netuse otherwise).")
    var root: String?

    @Flag(help: "Stay in the foreground (as systemd runs it) instead of detaching.")
    var foreground = false

    @Option(help: "Where persistent drives are recorded (default: /var/lib/netuse for root, $XDG_STATE_HOME/netuse otherwise).")
    var stateDir: String?

    @Option(help: ArgumentHelp("How often to retry persistent drives whose share was unreachable.", valueName: "seconds"))
    var retryInterval: Double = 30

    @Option(help: "error, warning, info or debug.")
    var logLevel = "info"

    @Option(help: ArgumentHelp("Memory for all cached file data (read-ahead, write-behind) of every drive and user; over it, reading ahead shrinks and writers wait.", valueName: "MiB"))
    var cacheMemory = 128

    func validate() throws {
        guard Log.Level(name: logLevel) != nil else { throw ValidationError("--log-level takes error, warning, info or debug.") }
        if let root, !root.hasPrefix("/") { throw ValidationError("--root takes an absolute path.") }
        if let stateDir, !stateDir.hasPrefix("/") { throw ValidationError("--state-dir takes an absolute path.") }
        guard retryInterval >= 0.1 else { throw ValidationError("--retry-interval takes at least 0.1 seconds.") }
        guard (8...65536).contains(cacheMemory) else { throw ValidationError("--cache-memory takes 8 to 65536 MiB.") }
    }

    func run() throws {
        Log.configure(level: Log.Level(name: logLevel)!)
        let environment = InstancePaths.environment()
        let root = self.root ?? InstancePaths.defaultRoot(environment: environment)
        let stateDirectory = stateDir ?? Daemon.defaultStateDirectory(environment: environment)
        if !foreground {
            try Background.start(root: root, stateDirectory: stateDirectory, logLevel: logLevel,
                                 options: ["--retry-interval", String(retryInterval), "--cache-memory", String(cacheMemory)])
            return
        }
        CacheBudget.shared.limit = cacheMemory << 20
        Daemon.takeSignals()
        do {
            try Daemon.run(root: root, stateDirectory: stateDirectory, retryInterval: .milliseconds(Int64(retryInterval * 1000)))
        } catch {
            Log.error("\(error)")
            throw ExitCode(1)
        }
    }
}

netuse_tune_malloc()
Netused.main()
