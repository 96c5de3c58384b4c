import Backends
import FUSEBridge
import Glibc
import NetUseCore
import Redirector
import Synchronization

/// The drives of one daemon instance. A letter is reserved while its drive is being
/// connected or deleted, so that slow work happens outside the lock and no second request
/// can take the letter meanwhile.
final class DriveManager: Sendable {
    private struct State {
        var drives: [DriveLetter: Drive] = [:]
        var reserved: Set<DriveLetter> = []

        var taken: Set<DriveLetter> { reserved.union(drives.keys) }
    }

    let root: String
    private let state = Mutex(State())

    init(root: String) {
        self.root = root
    }

    func use(_ choice: LetterChoice, remote: Remote, options: [String: String], caller: UnixSocket.Peer) throws(NetError) -> DriveStatus {
        if let unknown = options.keys.sorted().first {
            throw NetError(.invalidParameter, detail: ["Unknown option '\(unknown)'."])
        }
        let letter = try reserve(choice)
        defer { state.withLock { _ = $0.reserved.remove(letter) } }

        let backend: any ShareBackend
        switch remote {
        case .local(let path):
            backend = try LocalShare(directory: path, caller: Caller(uid: caller.uid, gid: caller.gid, pid: caller.pid))
        }
        let mountpoint = root + "/" + letter.name
        if mkdir(mountpoint, 0o755) != 0 && errno != EEXIST {
            throw NetError(.deviceNotFunctioning, detail: ["Cannot make the mountpoint \(mountpoint): \(Errno.current)."])
        }
        let redirector = Redirector(backend: backend)
        let mount: FUSEMount
        do {
            mount = try FUSEMount(redirector: redirector, mountpoint: mountpoint,
                                  fileSystemName: "netuse:" + remote.description, allowOther: geteuid() == 0)
        } catch {
            rmdir(mountpoint)
            throw NetError(.deviceNotFunctioning, detail: ["Cannot mount \(mountpoint): \(error)."])
        }
        let drive = Drive(letter: letter, remote: remote, owner: caller.uid, redirector: redirector, mount: mount)
        state.withLock { $0.drives[letter] = drive }
        Log.info("\(letter) connected to \(remote) at \(mountpoint) for uid \(caller.uid)")
        return drive.status
    }

    func delete(_ letter: DriveLetter, caller: UnixSocket.Peer) throws(NetError) {
        let drive = try state.withLock { (state) throws(NetError) -> Drive in
            guard let drive = state.drives[letter] else { throw NetError(.useNotFound, detail: ["\(letter) is not connected."]) }
            guard caller.uid == 0 || caller.uid == drive.owner else {
                throw NetError(.accessDenied, detail: ["\(letter) belongs to uid \(drive.owner)."])
            }
            state.drives[letter] = nil
            state.reserved.insert(letter)
            return drive
        }
        do throws(Errno) {
            try MountTable.unmount(drive.mount.mountpoint)
        } catch {
            state.withLock {
                $0.drives[letter] = drive
                $0.reserved.remove(letter)
            }
            if error.rawValue == EBUSY {
                throw NetError(.deviceInUse, detail: ["The kernel refused to unmount \(drive.mount.mountpoint): it is in use."])
            }
            throw NetError(.deviceNotFunctioning, detail: ["Cannot unmount \(drive.mount.mountpoint): \(error)."])
        }
        finish(drive)
        state.withLock { _ = $0.reserved.remove(letter) }
        Log.info("\(letter) deleted")
    }

    func list(caller: UnixSocket.Peer) -> [DriveStatus] {
        state.withLock { $0.drives.values.sorted { $0.letter < $1.letter } }.map(\.status)
    }

    /// Takes every drive down for a daemon stop. A drive still in use is detached from the
    /// tree: its users see it vanish, and the kernel ends its session when the daemon exits.
    func shutdown() {
        let drives = state.withLock { state in
            defer { state.drives.removeAll() }
            return Array(state.drives.values)
        }
        for drive in drives {
            do {
                try MountTable.unmount(drive.mount.mountpoint)
                finish(drive)
                Log.info("\(drive.letter) unmounted")
            } catch {
                MountTable.detach(drive.mount.mountpoint)
                drive.mount.abandon()
                drive.redirector.disconnect()
                rmdir(drive.mount.mountpoint)
                Log.warning("\(drive.letter) was busy and is detached: \(error)")
            }
        }
    }

    /// After a successful unmount: the loop has ended or is ending; let go of everything.
    private func finish(_ drive: Drive) {
        drive.mount.close()
        drive.redirector.disconnect()
        rmdir(drive.mount.mountpoint)
    }

    private func reserve(_ choice: LetterChoice) throws(NetError) -> DriveLetter {
        try state.withLock { (state) throws(NetError) -> DriveLetter in
            let letter: DriveLetter
            switch choice {
            case .letter(let wanted):
                guard !state.taken.contains(wanted) else {
                    throw NetError(.alreadyAssigned, detail: ["\(wanted) is already connected."])
                }
                letter = wanted
            case .nextFree:
                guard let free = DriveLetter.nextFree(excluding: state.taken) else {
                    throw NetError(.alreadyAssigned, detail: ["Every letter from A: to Z: is in use."])
                }
                letter = free
            }
            state.reserved.insert(letter)
            return letter
        }
    }
}
