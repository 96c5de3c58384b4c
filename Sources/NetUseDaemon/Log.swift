import Glibc

/// Lines on stderr, which systemd's journal or the terminal takes; below `level` nothing
/// is formatted at all.
public enum Log {
    public enum Level: Int, Sendable, CaseIterable {
        case error, warning, info, debug

        public init?(name: String) {
            guard let level = Level.allCases.first(where: { "\($0)" == name }) else { return nil }
            self = level
        }
    }

    nonisolated(unsafe) static var level = Level.info

    /// Set once at start, before any thread that logs exists.
    public static func configure(level: Level) { self.level = level }

    public static func error(_ message: @autoclosure () -> String) { write(.error, message) }
    public static func warning(_ message: @autoclosure () -> String) { write(.warning, message) }
    public static func info(_ message: @autoclosure () -> String) { write(.info, message) }
    public static func debug(_ message: @autoclosure () -> String) { write(.debug, message) }

    /// Messages quote what users sent: a control character is written as \xNN, so that no
    /// name can forge a line or drive a terminal.
    static func escaped(_ message: String) -> String {
        guard message.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || $0 == "\\" }) else { return message }
        var result = ""
        for scalar in message.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7f {
                result += "\\x" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
            } else if scalar == "\\" {
                result += "\\\\"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func write(_ messageLevel: Level, _ message: () -> String) {
        guard messageLevel.rawValue <= level.rawValue else { return }
        let line = "netused: \(messageLevel): \(escaped(message()))\n"
        _ = line.withCString { Glibc.write(STDERR_FILENO, $0, strlen($0)) }
    }
}
