import Backends
import FUSEBridge
import Glibc
import NetUseCore
import Redirector
import Synchronization

/// Persistent drives: the state file, restoring at start and retrying the unavailable.
extension DriveManager {
    /// At start: every recorded drive is connected again; one whose share cannot be reached
    /// is kept as Unavailable and retried.
    func restore() {
        guard let store else { return }
        let records: [DriveRecord]
        do {
            records = try store.load()
        } catch {
            let notice = "The state file \(store.path) was corrupt; it was kept as \(error.keptAs) and no drive was restored."
            Log.error(notice)
            state.withLock { $0.notice = notice }
            return
        }
        let keyed = records.compactMap { record in record.key.map { ($0, record) } }
        state.withLock { state in
            for (key, record) in keyed {
                state.records[key] = record
                state.unavailable.insert(key)
                state.restoring.insert(key)
            }
        }
        for (key, record) in keyed {
            reconnect(key, record)
            state.withLock { _ = $0.restoring.remove(key) }
        }
    }

    /// Tries an Unavailable drive once; it stays Unavailable if the share is still away.
    func reconnect(_ key: DriveKey, _ record: DriveRecord) {
        let letter = key.letter
        do throws(NetError) {
            let (kind, remote) = try kinds.parse(record.remote)
            let settings = try DriveOptions.parse(record.options)
            // Nobody is waiting on the socket: the owner acts with what a fresh login gets.
            let identity = Identity.ofUser(uid: record.owner, gid: record.ownerGroup)
            var credentials = Credentials(user: record.user ?? "", password: "", domain: record.domain ?? "")
            if let file = record.credentialsFile {
                let read = try CredentialsFile.read(file, owner: identity)
                credentials = Credentials(account: read.user ?? record.user ?? "", password: read.password ?? "",
                                          domain: read.domain ?? record.domain)
            }
            let owner = Caller(uid: record.owner, gid: record.ownerGroup, pid: 0)
            let drive = try connect(key, kind, remote, settings: settings, credentials: credentials, owner: owner, identity: identity,
                                    credentialsCache: record.credentialsCache)
            let kept = state.withLock { state -> Bool in
                // Deleted meanwhile: the record is gone, and so must the drive be.
                guard state.records[key] == record else { return false }
                state.unavailable.remove(key)
                state.drives[key] = drive
                return true
            }
            if !kept {
                try? MountTable.unmount(drive.mount.mountpoint)
                finish(drive)
            }
        } catch {
            Log.warning("\(letter) (\(record.remote)) is unavailable: System error \(error.code.rawValue) \(error.detail.joined(separator: " "))")
        }
    }

    /// Retries the Unavailable drives every `interval`.
    func startRetrying(every interval: Duration) {
        SystemThread.every(interval) { [self] in
            let waiting = state.withLock { state in
                state.unavailable.subtracting(state.restoring).compactMap { key in state.records[key].map { (key, $0) } }
            }
            for (key, record) in waiting { reconnect(key, record) }
        }
    }

    func saveRecords() {
        guard let store else { return }
        do {
            try store.save { state.withLock { Array($0.records.values) } }
        } catch {
            Log.error("cannot write \(store.path): \(error)")
        }
    }

}
