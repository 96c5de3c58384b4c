/// What the handle cache did for one drive since it was connected.
public struct HandleCounters: Codable, Sendable, Equatable {
    /// Opens the kernel asked for.
    public var opens = 0
    /// Opens that reached the share.
    public var backendOpens = 0
    /// Opens served by a ServerOpen another FileHandle held open.
    public var collapsed = 0
    /// Opens served by a deferred ServerOpen, with no round trip.
    public var revived = 0
    /// Deferred ServerOpens closed by delete (or a flush of the whole drive).
    public var flushed = 0
    /// Deferred ServerOpens closed when closetimeo ran out.
    public var expired = 0
    /// Deferred ServerOpens closed because the list was full.
    public var evicted = 0
    /// Deferred ServerOpens closed by unlink, rename, rmdir, truncate, or a changed file.
    public var invalidated = 0

    public init() {}
}
