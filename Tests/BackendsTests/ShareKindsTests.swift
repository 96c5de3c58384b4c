import Backends
import NetUseCore
import Testing

/// Remotes as the kinds of share parse them: the first kind that recognises the text takes it.
@Suite struct ShareKindsTests {
    private func parse(_ text: String) throws(NetError) -> Remote { try ShareKinds.standard.parse(text).remote }

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
        #expect(try parse(text) == Remote(scheme: "file", description: path))
    }

    private func code(_ text: String) -> Int? {
        do {
            _ = try parse(text)
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
        let remote = try parse(text)
        #expect(remote.scheme == "smb")
        #expect(try SMBLocation(parsing: text).url == url)
        #expect(remote.description == shown)
        // What the state file keeps parses to the same remote.
        #expect(try parse(remote.description).description == shown)
    }

    @Test func takesTheUserFromTheURL() throws {
        let remote = try parse("smb://bob@files:139/home")
        #expect(remote.user == "bob")
        #expect(remote.server == "files:139")
        #expect(try parse("/srv").server == nil)
    }

    @Test(arguments: ["//server", "//", "smb://", "smb://server", "//server:0/share", "//server:99999/share", "smb://:445/share"])
    func refusesSMBRemotesWithoutServerOrShare(_ text: String) {
        #expect(code(text) == 67)
    }
}
