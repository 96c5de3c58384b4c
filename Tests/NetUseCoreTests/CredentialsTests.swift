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

    @Test func theUserOfAnSMBURLIsTheDefault() throws {
        let line = #"{"v":1,"op":"use","letter":"q","remote":"smb://bob@files/share","password":"pw"}"#
        guard case .use(let request) = try ControlOperation(line: Array(line.utf8)) else {
            Issue.record("not a use")
            return
        }
        #expect(request.credentials == Credentials(user: "bob", password: "pw", domain: ""))
    }
}
