import NetUseCore
import Synchronization

/// How an SMB drive's connection is doing, as `list` shows it.
final class SMBHealth: Sendable {
    enum State: UInt8 {
        case connected, reconnecting, disconnected

        var status: String {
            switch self {
            case .connected: return "OK"
            case .reconnecting: return "Reconnecting"
            case .disconnected: return "Disconnected"
            }
        }
    }

    private let state = Atomic<UInt8>(State.connected.rawValue)
    /// When a reconnect last failed (monotonic nanoseconds); 0 for never.
    private let lastFailure = Atomic<Int64>(0)

    var current: State { State(rawValue: state.load(ordering: .relaxed))! }

    func set(_ new: State) {
        state.store(new.rawValue, ordering: .relaxed)
    }

    /// A new worker could not reach the server.
    func reconnectFailed() {
        lastFailure.store(Self.now(), ordering: .relaxed)
        set(.disconnected)
    }

    /// While the server is gone, requests fail at once instead of each waiting out another
    /// connect; one attempt is made per interval, and the first that succeeds brings the
    /// drive back.
    func mayTryToReconnect(every interval: Duration) -> Bool {
        guard current == .disconnected else { return true }
        return Self.now() - lastFailure.load(ordering: .relaxed) >= interval.nanoseconds
    }

    /// The one monotonic clock, in nanoseconds, which an Atomic can hold.
    private static func now() -> Int64 { MonotonicClock.now().nanoseconds }
}
