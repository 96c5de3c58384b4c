import FoundationEssentials
import Glibc
import NetUseCore
import Synchronization

/// A persistent drive as the state file keeps it: enough to connect it again at start.
/// Never a password: an SMB drive that needs one names its credentials file.
struct DriveRecord: Codable, Equatable, Sendable {
    var letter: String
    var remote: String
    var owner: UInt32
    var ownerGroup: UInt32
    var options: [String: String]
    var user: String?
    var domain: String?
    var credentialsFile: String?
    /// `-o sec=krb5`: the KRB5CCNAME the drive was connected with; absent, the owner's default.
    var credentialsCache: String?
    /// A drive every user sees (`use --global`); absent in older files.
    var global: Bool?
}

/// The instance's state file, written whole and atomically (a temporary file of its own,
/// fsync, rename, fsync of the directory), mode 0600, one save at a time: each save writes
/// the records as they are when its turn comes, so the last one written is the newest.
final class DriveRecords: Sendable {
    let path: String
    private let saving = Mutex(())

    init(directory: String) {
        path = directory + "/drives.json"
    }

    /// Saves what `current` returns, read once this save holds the turn.
    func save(_ current: () -> [DriveRecord]) throws(Errno) {
        try saving.withLock { (_) throws(Errno) in try writeFile(current()) }
    }

    struct Corrupt: Error {
        let keptAs: String
    }

    /// The records, or none if there is no file yet. A file that does not parse is moved
    /// aside (and reported), so that the daemon can start and the user can look at it.
    func load() throws(Corrupt) -> [DriveRecord] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            bytes += chunk[..<count]
        }
        close(fd)
        struct File: Codable { var version: Int; var drives: [DriveRecord] }
        if let file = try? JSONDecoder().decode(File.self, from: Data(bytes)), file.version == 1 {
            return file.drives
        }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let aside = "\(path).corrupt-\(now.tv_sec)"
        rename(path, aside)
        throw Corrupt(keptAs: aside)
    }

    private func writeFile(_ records: [DriveRecord]) throws(Errno) {
        struct File: Codable { var version: Int; var drives: [DriveRecord] }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let bytes = Array(try! encoder.encode(File(version: 1, drives: records.sorted { $0.letter < $1.letter })))
        // Passwords are never in it, but which shares a user maps is theirs: mode 0600.
        try FileReplacement.write(bytes, to: path, mode: 0o600)
    }
}
