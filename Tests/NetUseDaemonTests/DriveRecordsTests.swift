@testable import NetUseDaemon
import Glibc
import NetUseCore
import Synchronization
import Testing

@Suite struct DriveRecordsTests {
    private func directory() -> String {
        var template = Array("/tmp/netuse-records-XXXXXX".utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    private func record(_ letter: String) -> DriveRecord {
        DriveRecord(letter: letter, remote: "/srv/\(letter)", owner: 1000, ownerGroup: 1000, options: [:])
    }

    private func entries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Saves racing each other write whole files, one at a time, and the last one written
    /// holds the records as they were last: no older snapshot is renamed over a newer one.
    @Test func concurrentSavesLeaveTheNewestRecords() throws {
        let path = directory()
        let store = DriveRecords(directory: path)
        let current = Mutex<[DriveRecord]>([])
        let threads = (0..<8).map { index in
            SystemThread {
                for round in 0..<20 {
                    current.withLock { $0 = (0...((index + round) % 26)).map { self.record(String(UnicodeScalar(97 + $0)!)) } }
                    try? store.save { current.withLock { $0 } }
                }
            }
        }
        threads.forEach { $0.join() }
        try store.save { current.withLock { $0 } }
        #expect(try store.load() == current.withLock { $0 }.sorted { $0.letter < $1.letter })
        #expect(entries(path) == ["drives.json"])
        var attributes = stat()
        stat(store.path, &attributes)
        #expect(attributes.st_mode & 0o777 == 0o600)
    }

    @Test func aCorruptFileIsKeptAside() throws {
        let path = directory()
        let store = DriveRecords(directory: path)
        let fd = open(store.path, O_WRONLY | O_CREAT, 0o600)
        _ = "{not json".withCString { write(fd, $0, strlen($0)) }
        close(fd)
        #expect(throws: DriveRecords.Corrupt.self) { try store.load() }
        #expect(entries(path).contains { $0.hasPrefix("drives.json.corrupt-") })
    }
}
