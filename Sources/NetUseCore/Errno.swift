import Glibc

/// A POSIX error number, as a local filesystem would answer it.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno`, read right after a failed call.
    public static var current: Errno { Errno(errno) }

    public var description: String { String(cString: strerror(rawValue)) + " (errno \(rawValue))" }
}

/// Runs a call that answers -1 and sets errno on failure; retries on EINTR.
@inline(__always)
public func systemCall<T: BinaryInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        if errno != EINTR { throw Errno.current }
    }
}
