import ArgumentParser
import Glibc
import NetUseCore
import NetUseDaemon

/// Without --foreground, netused starts itself again with it, in a session of its own, and
/// returns once that copy answers on its socket, so that a script may use it right away.
/// Its log goes to ROOT/netused.log.
enum Background {
    /// `options`: the other command-line options, passed on as they were given.
    static func start(root: String, stateDirectory: String?, logLevel: String, options: [String]) throws {
        try Daemon.prepare(root: root)
        let logPath = root + "/netused.log"
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, 0x80)  // POSIX_SPAWN_SETSID, a GNU extension Swift does not see
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o640)

        let words = ["netused", "--foreground", "--root", root, "--log-level", logLevel]
            + (stateDirectory.map { ["--state-dir", $0] } ?? []) + options
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, environ)
        guard result == 0 else { throw ValidationError("cannot start netused: \(Errno(result))") }

        let socket = InstancePaths.socket(inRoot: root)
        for _ in 0..<200 {
            if let fd = try? UnixSocket.connect(path: socket) {
                close(fd)
                print("netused \(pid) is listening on \(socket); its log is \(logPath)")
                return
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { throw ExitCode(1) }
            usleep(50_000)
        }
        throw ValidationError("netused \(pid) did not start listening on \(socket) within 10 s")
    }
}
