import Glibc
import NetUseCore

/// One handle open on the share; what it means belongs to the backend (a descriptor, an SMB fid).
public struct BackendHandle: Hashable, Sendable {
    public let rawValue: Int64
    public init(_ rawValue: Int64) { self.rawValue = rawValue }
}

/// A SETATTR: only the fields that are set change. Times may be UTIME_NOW or UTIME_OMIT.
public struct AttributeChanges: Sendable {
    public var mode: mode_t?
    public var uid: uid_t?
    public var gid: gid_t?
    public var size: off_t?
    public var accessTime: timespec?
    public var modificationTime: timespec?

    public init() {}

    /// utimensat's UTIME_NOW and UTIME_OMIT, which Glibc's Swift module does not import.
    public static let timeNow = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)
    public static let timeOmit = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)

    public var changesTimes: Bool { accessTime != nil || modificationTime != nil }
}

public struct DirectoryEntry: Sendable {
    public let name: String
    public let attributes: stat

    public init(name: String, attributes: stat) {
        self.name = name
        self.attributes = attributes
    }
}

public struct RenameFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let noReplace = RenameFlags(rawValue: 1 << 0)
    public static let exchange = RenameFlags(rawValue: 1 << 1)
}

/// Data written behind (after `write` answered) that the share refused, counted per
/// backend handle. A FileHandle notes the count when it opens and reports every failure
/// after it at its next fsync or close, as Linux's errseq does for each open file
/// description: no descriptor consumes another's news.
public struct WriteFailures: Sendable, Equatable {
    public var count: UInt64 = 0
    public var latest: Errno?

    public init() {}

    public mutating func record(_ error: Errno) {
        count += 1
        latest = error
    }
}

/// A share, spoken to by paths relative to its top ("" is the top, "a/b" is below it).
/// Every failure is the errno a local filesystem would give for the same call.
public protocol ShareBackend: Sendable {
    func attributes(of path: String) throws(Errno) -> stat
    /// A LOOKUP's answer: the name's attributes and how old they are. A share may answer
    /// from what it fetched no longer than `window` (the drive's attribute timeout) ago.
    func lookup(_ path: String, within window: Duration) throws(Errno) -> (attributes: stat, age: Duration)
    func attributes(of handle: BackendHandle) throws(Errno) -> stat
    func setAttributes(_ changes: AttributeChanges, of path: String, handle: BackendHandle?) throws(Errno) -> stat
    /// The directory's entries with their attributes, `.` and `..` included.
    func list(_ path: String) throws(Errno) -> [DirectoryEntry]

    func open(_ path: String, flags: Int32) throws(Errno) -> BackendHandle
    func create(_ path: String, flags: Int32, mode: mode_t, caller: Caller) throws(Errno) -> BackendHandle
    /// Fills the buffer unless the file ends first.
    func read(_ handle: BackendHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: off_t) throws(Errno) -> Int
    /// Writes all of the buffer.
    func write(_ handle: BackendHandle, from buffer: UnsafeRawBufferPointer, at offset: off_t) throws(Errno) -> Int
    /// What was written through the handle is on the share when this returns; a failure
    /// of data written behind is in `writeFailures`, not thrown here.
    func sync(_ handle: BackendHandle, dataOnly: Bool) throws(Errno)
    /// A close(2) of a descriptor that could write: what was written through the handle is
    /// on the share when this returns, or in `writeFailures`.
    func flush(_ handle: BackendHandle) throws(Errno)
    func writeFailures(_ handle: BackendHandle) -> WriteFailures
    func close(_ handle: BackendHandle)
    /// A deferred handle serves a new open: what the backend kept for it (read-ahead)
    /// dates from before the open's revalidation and must go.
    func revived(_ handle: BackendHandle)

    func makeDirectory(_ path: String, mode: mode_t, caller: Caller) throws(Errno)
    func makeNode(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno)
    func removeDirectory(_ path: String) throws(Errno)
    func unlink(_ path: String) throws(Errno)
    func rename(_ from: String, to: String, flags: RenameFlags) throws(Errno)
    func symlink(target: String, at path: String, caller: Caller) throws(Errno)
    func readLink(_ path: String) throws(Errno) -> String
    func link(_ existing: String, to newPath: String) throws(Errno)
    func statistics() throws(Errno) -> statvfs

    /// Ends the session with the share; called once, after the last operation.
    func disconnect()

    /// What `list` shows in its Status column: OK, or how the connection is doing.
    var status: String { get }

    /// What the share can do beyond plain files and directories.
    var capabilities: ShareCapabilities { get }

    /// Whether the calling thread's identity may open the file as `flags` asks, now. An open
    /// that reuses a ServerOpen reaches no share, so it is asked this instead.
    func checkAccess(_ path: String, flags: Int32) throws(Errno)

    /// What the share lets the drive cache for the handle now (its lease); nil for a share
    /// that has no leases and that no other client can be kept waiting by (a local directory).
    func caching(_ handle: BackendHandle) -> HandleCaching?

    /// A byte-range lock on the share, or its unlock (ranges are unlocked exactly as they
    /// were locked). Without `waiting` a conflicting lock fails at once with EAGAIN; with it
    /// the share waits for the range, until `waiting` is interrupted (EINTR).
    func lock(_ handle: BackendHandle, _ range: LockRange, _ request: LockRequest, waiting: LockWait?) throws(Errno)

    /// copy_file_range between two handles on the share, done by the share itself when it
    /// can (SMB's server-side copy); answers the bytes copied, fewer only at the source's end.
    /// EOPNOTSUPP lets the kernel copy through the drive instead.
    func copyRange(from source: BackendHandle, at sourceOffset: off_t, to destination: BackendHandle,
                   at destinationOffset: off_t, length: Int) throws(Errno) -> Int

    /// Where the share tells of a lease break: the handle may cache only what is given from
    /// then on. Called once, before the first open; the observer may close handles.
    func observeBreaks(_ observer: @escaping @Sendable (BackendHandle, HandleCaching) -> Void)
}

extension ShareBackend {
    public var status: String { "OK" }

    /// A share that checks its own account (SMB) decided at the first open.
    public func checkAccess(_ path: String, flags: Int32) throws(Errno) {}

    /// A backend that writes through as writes arrive has nothing to flush.
    public func flush(_ handle: BackendHandle) throws(Errno) {}

    /// A backend that writes through has no failure to tell of later.
    public func writeFailures(_ handle: BackendHandle) -> WriteFailures { WriteFailures() }

    /// A backend that keeps nothing per handle has nothing to forget.
    public func revived(_ handle: BackendHandle) {}

    public func caching(_ handle: BackendHandle) -> HandleCaching? { nil }

    public func copyRange(from source: BackendHandle, at sourceOffset: off_t, to destination: BackendHandle,
                          at destinationOffset: off_t, length: Int) throws(Errno) -> Int {
        throw Errno(EOPNOTSUPP)
    }

    /// A share without `.byteRangeLocks` is never asked: the kernel keeps such locks itself.
    public func lock(_ handle: BackendHandle, _ range: LockRange, _ request: LockRequest, waiting: LockWait?) throws(Errno) {
        throw Errno(ENOLCK)
    }

    /// A share without leases breaks none.
    public func observeBreaks(_ observer: @escaping @Sendable (BackendHandle, HandleCaching) -> Void) {}
}

/// What a share can do beyond files and directories. For each thing a backend leaves out,
/// the default below answers as a Linux filesystem without it does (mount.cifs without the
/// POSIX extensions, vfat), so that a backend writes no stubs and every one that lacks a
/// feature answers alike.
public struct ShareCapabilities: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `symlink` and `readLink`.
    public static let symlinks = ShareCapabilities(rawValue: 1 << 0)
    /// `link`.
    public static let hardLinks = ShareCapabilities(rawValue: 1 << 1)
    /// `makeNode`: FIFOs, sockets and devices.
    public static let specialFiles = ShareCapabilities(rawValue: 1 << 2)
    /// `rename` with `.exchange`.
    public static let exchange = ShareCapabilities(rawValue: 1 << 3)
    /// Every call reaches the share with the requesting process's own credentials (the
    /// thread's fsuid, fsgid and groups), so that the kernel checks it there.
    public static let actsAsCaller = ShareCapabilities(rawValue: 1 << 4)
    /// `lock`: fcntl and flock locks reach the share, where other clients meet them.
    public static let byteRangeLocks = ShareCapabilities(rawValue: 1 << 5)
}

extension ShareBackend {
    public var capabilities: ShareCapabilities { [] }

    public func lookup(_ path: String, within window: Duration) throws(Errno) -> (attributes: stat, age: Duration) {
        (try attributes(of: path), .zero)
    }

    public func makeNode(_ path: String, mode: mode_t, device: dev_t, caller: Caller) throws(Errno) { throw Errno(EPERM) }
    public func symlink(target: String, at path: String, caller: Caller) throws(Errno) { throw Errno(EPERM) }
    /// Without symlinks, nothing on the share is one.
    public func readLink(_ path: String) throws(Errno) -> String { throw Errno(EINVAL) }
    public func link(_ existing: String, to newPath: String) throws(Errno) { throw Errno(EPERM) }
}
