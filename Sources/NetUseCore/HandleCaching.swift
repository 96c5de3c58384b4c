/// What the share lets the drive cache for one of its handles: an SMB lease's state
/// (MS-SMB2 2.2.13.2.8, the same bits), or what an oplock amounts to. The handle cache defers
/// a ServerOpen only while it may cache the handle, and a reopen within a read lease needs no
/// revalidation; a share that breaks a lease says so through `ShareBackend.observeBreaks`.
public struct HandleCaching: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Reads may come from what was read before: another client's write breaks this first.
    public static let read = HandleCaching(rawValue: 0x1)
    /// The handle may stay open after its last close: another client's conflicting open,
    /// rename or delete breaks this first.
    public static let handle = HandleCaching(rawValue: 0x2)
    /// Writes may wait on the client.
    public static let write = HandleCaching(rawValue: 0x4)

    /// As Windows writes lease states: "RWH", "RH", "R", or "none".
    public var description: String {
        let letters = (contains(.read) ? "R" : "") + (contains(.write) ? "W" : "") + (contains(.handle) ? "H" : "")
        return letters.isEmpty ? "none" : letters
    }
}
