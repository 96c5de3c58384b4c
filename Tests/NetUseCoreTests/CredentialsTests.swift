import Glibc
import NetUseCore
import Testing

@Suite struct CredentialsTests {
    @Test func plainUser() {
        #expect(Credentials(account: "alice", password: "pw", domain: nil) == Credentials(user: "alice", password: "pw", domain: ""))
    }

    @Test func domainBackslashUser() {
        #expect(Credentials(account: "CORP\\alice", password: "pw", domain: nil) == Credentials(user: "alice", password: "pw", domain: "CORP"))
    }

    @Test func userAtRealm() {
        #expect(Credentials(account: "alice@corp.example", password: "", domain: nil)
                == Credentials(user: "alice", password: "", domain: "corp.example"))
    }

    @Test func anExplicitDomainWins() {
        #expect(Credentials(account: "CORP\\alice", password: "", domain: "OTHER").domain == "OTHER")
    }
}

@Suite struct CredentialsFileTests {
    private func file(_ text: String, mode: mode_t = 0o600) -> String {
        var template = Array("/tmp/netuse-credentials-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        let path = String(cString: template)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        fchmod(fd, mode)
        close(fd)
        return path
    }

    @Test func readsTheThreeKeys() throws {
        let path = file("username=alice\npassword=p=w\r\ndomain=CORP\n")
        defer { unlink(path) }
        let read = try CredentialsFile.read(path)
        #expect(read.user == "alice" && read.password == "p=w" && read.domain == "CORP")
    }

    @Test func aFileOthersMayReadIsRefused() {
        let path = file("password=x\n", mode: 0o644)
        defer { unlink(path) }
        #expect(throws: NetError.self) { try CredentialsFile.read(path) }
    }

    /// A FIFO would block the daemon's start; it is refused at once.
    @Test func aFIFOIsNotAFile() {
        let path = "/tmp/netuse-credentials-fifo-\(getpid())"
        mkfifo(path, 0o600)
        defer { unlink(path) }
        #expect(throws: NetError.self) { try CredentialsFile.read(path) }
    }

    @Test func aFileOverTheLimitIsRefused() {
        let path = file(String(repeating: "#", count: CredentialsFile.maxSize + 1))
        defer { unlink(path) }
        #expect(throws: NetError.self) { try CredentialsFile.read(path) }
    }

    /// Read for a user, the file is opened as that user: root's private file is out of reach.
    @Test(.enabled(if: geteuid() == 0)) func anotherUsersFileIsNeverReadForThem() {
        let path = file("password=root-only\n")
        defer { unlink(path) }
        #expect(throws: NetError.self) { try CredentialsFile.read(path, owner: Identity(uid: 65534, gid: 65534, groups: [])) }
        #expect((try? CredentialsFile.read(path, owner: Identity(uid: 0, gid: 0, groups: [])))?.password == "root-only")
    }
}
