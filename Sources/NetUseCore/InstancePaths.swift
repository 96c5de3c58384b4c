import Glibc

/// Where one netused instance keeps its control socket and mountpoints.
public enum InstancePaths {
    public static let socketName = "control.sock"

    /// `/run/netuse` for root, `$XDG_RUNTIME_DIR/netuse` for anyone else.
    public static func defaultRoot(uid: uid_t = geteuid(), environment: [String: String]) -> String {
        if uid == 0 { return "/run/netuse" }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { return runtime + "/netuse" }
        return "/tmp/netuse-\(uid)"
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
