import NetUseCore
import Testing

@Suite struct RemoteTests {
    @Test(arguments: [
        ("/srv/share", "/srv/share"),
        ("/srv/share/", "/srv/share"),
        ("/srv//share/./x/..", "/srv/share"),
        ("/", "/"),
        ("file:///srv/share", "/srv/share"),
        ("FILE://localhost/srv/share", "/srv/share"),
        ("file:///srv/my%20share", "/srv/my share"),
    ])
    func parsesLocalShares(_ text: String, _ path: String) throws {
        #expect(try Remote(parsing: text) == .local(path: path))
    }

    private func code(_ text: String) -> Int? {
        do {
            _ = try Remote(parsing: text)
            return nil
        } catch {
            return error.code.rawValue
        }
    }

    @Test(arguments: ["relative", "", "file://otherhost/srv", "file://", "./x"])
    func refusesWhatNamesNoLocalDirectory(_ text: String) {
        #expect(code(text) == 67)
    }

    @Test(arguments: [
        ("//server/share", "smb://server/share", "//server/share"),
        ("\\\\server\\share\\dir", "smb://server/share/dir", "//server/share/dir"),
        ("smb://server:4455/share/a/b", "smb://server:4455/share/a/b", "smb://server:4455/share/a/b"),
        ("smb://alice@server/share", "smb://server/share", "//server/share"),
        ("//server//share/", "smb://server/share", "//server/share"),
    ])
    func parsesSMBShares(_ text: String, _ url: String, _ shown: String) throws {
        guard case .smb(let location) = try Remote(parsing: text) else {
            Issue.record("\(text) is not an SMB share")
            return
        }
        #expect(location.url == url)
        #expect(try Remote(parsing: text).description == shown)
    }

    @Test func takesTheUserFromTheURL() throws {
        guard case .smb(let location) = try Remote(parsing: "smb://bob@files:139/home") else { return }
        #expect(location.user == "bob")
        #expect(location.port == 139)
        #expect(location.serverKey == "files:139")
    }

    @Test(arguments: ["//server", "//", "smb://", "smb://server", "//server:0/share", "//server:99999/share", "smb://:445/share"])
    func refusesSMBRemotesWithoutServerOrShare(_ text: String) {
        #expect(code(text) == 67)
    }
}
