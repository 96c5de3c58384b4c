import Backends
import Glibc
import FUSEBridge
import NetUseCore
import Redirector
import Synchronization

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
    /// The scavenger's work for this drive, one tick at a time on a thread of the drive's
    /// own: a share that does not answer a close holds up no other drive's expiry.
    private let expiry = Courier()
    private let expiring = Atomic(false)

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

    /// Closes the deferred ServerOpens whose closetimeo ran out, unless the last tick's
    /// closes are still on their way.
    func scavenge() {
        guard expiring.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
        expiry.speculate({ [self] in
            redirector.expireDeferred()
            expiring.store(false, ordering: .releasing)
        }, cancel: { [self] in expiring.store(false, ordering: .releasing) })
    }

    /// After the drive left the tree: no more ticks, then every handle on the share closed
    /// and the session ended.
    func disconnect() {
        expiry.stop()
        redirector.disconnect()
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
