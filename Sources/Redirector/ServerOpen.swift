import CLinux
import Glibc
import NetUseCore

/// How a handle on the share was opened; opens collapse only onto a ServerOpen of the
/// same kind, since the flags change what a read or write on it does.
public struct OpenKind: Hashable, Sendable {
    public enum Access: String, Sendable, Codable {
        case read, write, readWrite
    }

    public let access: Access
    /// O_APPEND, O_SYNC, O_DSYNC, O_DIRECT, O_NOATIME: the flags that travel with the handle.
    let behaviour: Int32

    static let behaviourFlags: Int32 = O_APPEND | O_SYNC | O_DSYNC | NETUSE_O_DIRECT | NETUSE_O_NOATIME

    public init(flags: Int32) {
        switch flags & O_ACCMODE {
        case O_WRONLY: access = .write
        case O_RDWR: access = .readWrite
        default: access = .read
        }
        behaviour = flags & Self.behaviourFlags
    }
}

/// Which file a handle reaches: a path may come to name another file behind our back.
struct FileIdentity: Equatable {
    let device: UInt64
    let inode: UInt64

    init(_ attributes: stat) {
        device = UInt64(attributes.st_dev)
        inode = UInt64(attributes.st_ino)
    }
}

/// What a reopen compares to learn whether another writer changed the file.
struct Validator: Equatable {
    let size: Int64
    let seconds: Int
    let nanoseconds: Int

    init(_ attributes: stat) {
        size = Int64(attributes.st_size)
        seconds = attributes.st_mtim.tv_sec
        nanoseconds = attributes.st_mtim.tv_nsec
    }
}

/// One handle open on the share. FileHandles hold references on it; with none left it is
/// deferred (cached) until `deferredUntil`, and an open of the same kind revives it.
struct ServerOpen {
    let id: UInt64
    var fcb: UInt64
    let backend: BackendHandle
    let kind: OpenKind
    let identity: FileIdentity
    let openedAt: Duration
    /// The node it was opened for, whose kernel caches a lease break invalidates.
    let node: UInt64
    /// What its lease lets the drive cache; nil on a share without leases.
    var caching: HandleCaching?
    var breaks = 0
    /// A byte-range lock was taken through it: it is never deferred, as cifs.ko learned
    /// (35866f3f779a): a kept handle would carry a lock state nobody reopening expects.
    var locked = false
    var references = 0
    var deferredUntil: Duration?

    var isDeferred: Bool { deferredUntil != nil }
    /// Its close may wait: a lease lets it keep the handle, or the share has no leases and
    /// nobody else to keep waiting.
    var mayDefer: Bool { !locked && (caching.map { $0.contains(.handle) } ?? true) }
    var cachesReads: Bool { caching?.contains(.read) ?? false }
}

/// File Control Block: one per path on the share with open or deferred handles.
struct FCB {
    let id: UInt64
    /// Nil once the path was unlinked or replaced: the FCB lives on for its open handles,
    /// but no new open may reach it by name.
    var path: String?
    var serverOpens: [UInt64] = []
    var validator: Validator?
}
