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

    @Test(arguments: ["//server/share", "\\\\server\\share", "smb://server/share"])
    func smbIsNotSupportedYet(_ text: String) {
        #expect(code(text) == 50)
    }
}
