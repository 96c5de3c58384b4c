@testable import FUSEBridge
import Testing

/// mountinfo escapes space, tab, newline and backslash as three octal digits.
@Suite struct MountTableTests {
    @Test(arguments: [
        ("/srv/plain", "/srv/plain"),
        ("/srv/with\\040space", "/srv/with space"),
        ("/srv/tab\\011and\\012newline", "/srv/tab\tand\nnewline"),
        ("/srv/back\\134slash", "/srv/back\\slash"),
        ("/srv/not\\08escape", "/srv/not\\08escape"),
        ("/srv/ends\\04", "/srv/ends\\04"),
        ("/srv/ünïcode\\040x", "/srv/ünïcode x"),
    ])
    func unescapesWhatMountinfoEscapes(_ field: String, _ path: String) {
        #expect(MountTable.unescaped(Substring(field)) == path)
    }
}
