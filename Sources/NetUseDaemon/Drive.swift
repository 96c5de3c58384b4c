import Backends
import Glibc
import FUSEBridge
import NetUseCore
import Redirector

/// One connection: a letter, its share, its owner, and the FUSE mount that serves it.
final class Drive: Sendable {
    let key: DriveKey
    var letter: DriveLetter { key.letter }
    let remote: Remote
    let owner: uid_t
    /// The user name an SMB drive connected as ("" for guest and local shares).
    let account: String
    let redirector: Redirector
    let mount: FUSEMount
    /// How long one request to the share may take (SMB's `timeout`): what a stop waits for it.
    let timeout: Duration

    init(key: DriveKey, remote: Remote, owner: uid_t, account: String, redirector: Redirector, mount: FUSEMount,
         timeout: Duration) {
        self.timeout = timeout
        self.key = key
        self.remote = remote
        self.owner = owner
        self.account = account
        self.redirector = redirector
        self.mount = mount
    }

    func status(_ state: String? = nil) -> DriveStatus {
        let state = state ?? redirector.backend.status
        return DriveStatus(letter: letter.description, remote: remote.description, mountpoint: mount.mountpoint,
                    status: state, owner: owner, openHandles: redirector.openHandleCount,
                    deferredHandles: redirector.deferredCount, global: key.owner == nil ? true : nil)
    }

    /// Who may delete the drive or look at its references: its owner and root; a global
    /// drive, root alone.
    func allows(_ uid: uid_t) -> Bool { uid == 0 || (key.owner != nil && uid == owner) }

    var ownerName: String { key.owner == nil ? "every user (global)" : "uid \(owner)" }
}
