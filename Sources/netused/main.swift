import ArgumentParser
import Glibc
import NetUseCore
import NetUseDaemon

struct Netused: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netused",
        abstract: "The netuse daemon: maps shares to drive letters as FUSE mounts.",
        discussion: "Drive q is mounted at ROOT/q; clients talk to ROOT/control.sock.")

    @Option(help: "The instance's directory (default: /run/netuse for root, $XDG_RUNTIME_DIR/netuse otherwise).")
    var root: String?

    @Flag(help: "Stay in the foreground (as systemd runs it) instead of detaching.")
    var foreground = false

    @Option(help: "error, warning, info or debug.")
    var logLevel = "info"

    func validate() throws {
        guard Log.Level(name: logLevel) != nil else { throw ValidationError("--log-level takes error, warning, info or debug.") }
        if let root, !root.hasPrefix("/") { throw ValidationError("--root takes an absolute path.") }
    }

    func run() throws {
        Log.configure(level: Log.Level(name: logLevel)!)
        let root = self.root ?? InstancePaths.defaultRoot(environment: InstancePaths.environment())
        if !foreground {
            try Background.start(root: root, logLevel: logLevel)
            return
        }
        Daemon.takeSignals()
        do {
            try Daemon.run(root: root)
        } catch {
            Log.error("\(error)")
            throw ExitCode(1)
        }
    }
}

Netused.main()
