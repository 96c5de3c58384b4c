import Glibc

/// Where one netused instance keeps its control socket and mountpoints.
public enum InstancePaths {
    public static let socketName = "control.sock"

    /// `/run/netuse` for root, `$XDG_RUNTIME_DIR/netuse` for anyone else.
    public static func defaultRoot(uid: uid_t = geteuid(), environment: [String: String]) -> String {
        if uid == 0 { return "/run/netuse" }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { return runtime + "/netuse" }
        return fallbackRoot(uid: uid)
    }

    /// The folder of a socket path that lies in the world-writable fallback `/tmp/netuse-UID`,
    /// where anyone could have made it first; nil for any other path.
    public static func sharedFallback(of socketPath: String, uid: uid_t = getuid()) -> String? {
        let folder = fallbackRoot(uid: uid)
        return socketPath == socket(inRoot: folder) ? folder : nil
    }

    static func fallbackRoot(uid: uid_t) -> String { "/tmp/netuse-\(uid)" }

    /// A real directory (not a symlink) that `uid` owns and nobody else may enter or change.
    public static func isPrivate(_ folder: String, to uid: uid_t) -> Bool {
        var attributes = stat()
        return lstat(folder, &attributes) == 0 && attributes.st_mode & S_IFMT == S_IFDIR
            && attributes.st_uid == uid && attributes.st_mode & 0o077 == 0
    }

    public static func socket(inRoot root: String) -> String { root + "/" + socketName }

    /// The socket a client talks to: `--socket`, else `NETUSE_SOCKET`, else the default instance's.
    public static func clientSocket(explicit: String?, environment: [String: String]) -> String {
        if let explicit { return explicit }
        if let fromEnvironment = environment["NETUSE_SOCKET"], !fromEnvironment.isEmpty { return fromEnvironment }
        return socket(inRoot: defaultRoot(environment: environment))
    }

    public static func environment() -> [String: String] {
        var result: [String: String] = [:]
        var entry = Glibc.environ
        while let pointer = entry.pointee {
            let pair = String(cString: pointer)
            if let equals = pair.firstIndex(of: "=") {
                result[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }
}
