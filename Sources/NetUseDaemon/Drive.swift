import Backends
import Glibc
import FUSEBridge
import NetUseCore
import Redirector

/// One connection: a letter, its share, its owner, and the FUSE mount that serves it.
final class Drive: Sendable {
    let letter: DriveLetter
    let remote: Remote
    let owner: uid_t
    /// The user name an SMB drive connected as ("" for guest and local shares).
    let account: String
    let redirector: Redirector
    let mount: FUSEMount

    init(letter: DriveLetter, remote: Remote, owner: uid_t, account: String, redirector: Redirector, mount: FUSEMount) {
        self.letter = letter
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
                    deferredHandles: redirector.deferredCount)
    }

    /// Who may delete the drive or look at its references: its owner and root.
    func allows(_ uid: uid_t) -> Bool { uid == 0 || uid == owner }
}
