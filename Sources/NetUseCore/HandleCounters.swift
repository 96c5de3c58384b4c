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
    /// ServerOpens deferred under a lease that lets the handle be kept.
    public var deferredUnderLease = 0
    /// Opens served by a ServerOpen under a read lease, with no revalidation.
    public var revivedUnderLease = 0
    /// Lease breaks the share sent for ServerOpens of the drive.
    public var breaks = 0
    /// Deferred ServerOpens closed because a break took the handle lease away.
    public var closedByBreak = 0

    public init() {}
}

/// One row of `netusectl refs`: a ServerOpen and who holds it.
public struct ServerOpenReference: Codable, Sendable, Equatable {
    public var path: String
    /// "open" while FileHandles hold it, "deferred" while only the cache does.
    public var state: String
    public var secondsLeft: Double?
    public var handles: Int
    public var pids: [Int32]
    /// read, write or readWrite.
    public var access: String
    public var ageSeconds: Double
    /// Its lease state ("RWH", "RH", "R", "none"); nil on a share without leases.
    public var lease: String?
    /// Breaks the share sent for it.
    public var breaks: Int

    public init(path: String, state: String, secondsLeft: Double?, handles: Int, pids: [Int32], access: String, ageSeconds: Double,
                lease: String? = nil, breaks: Int = 0) {
        self.path = path
        self.state = state
        self.secondsLeft = secondsLeft
        self.handles = handles
        self.pids = pids
        self.access = access
        self.ageSeconds = ageSeconds
        self.lease = lease
        self.breaks = breaks
    }
}
