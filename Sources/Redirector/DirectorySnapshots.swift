import Glibc
import NetUseCore
import Synchronization

/// A listing taken at opendir, and how many writes the drive had seen when it was asked for.
struct Listing {
    let entries: [DirectoryEntry]
    let writes: UInt64
}

/// Directory listings taken at opendir, by directory handle.
struct DirectorySnapshots {
    private var snapshots: [UInt64: Listing] = [:]
    private var nextID: UInt64 = 1

    mutating func insert(_ listing: Listing) -> UInt64 {
        let id = nextID
        nextID += 1
        snapshots[id] = listing
        return id
    }

    subscript(id: UInt64) -> Listing? { snapshots[id] }

    mutating func remove(_ id: UInt64) { snapshots[id] = nil }
}
