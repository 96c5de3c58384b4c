import Glibc
import NetUseCore

/// A drive's letter in its namespace: a user's own (`owner`), or every user's (nil).
struct DriveKey: Hashable, Sendable {
    let owner: uid_t?
    let letter: DriveLetter

    /// The folder of the instance's root its mountpoint is in.
    var folder: String { owner.map { String($0) } ?? "global" }
}

extension DriveRecord {
    var key: DriveKey? {
        DriveLetter(letter).map { DriveKey(owner: global == true ? nil : owner, letter: $0) }
    }
}
