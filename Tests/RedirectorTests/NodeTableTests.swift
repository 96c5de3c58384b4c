import Glibc
import NetUseCore
@testable import Redirector
import Testing

@Suite struct NodeTableTests {
    @Test func pathsFollowParents() throws {
        var table = NodeTable()
        let dir = table.remember(parent: NodeTable.rootID, name: "dir")
        let file = table.remember(parent: dir, name: "f.txt")
        #expect(try table.path(of: NodeTable.rootID) == "")
        #expect(try table.path(of: dir) == "dir")
        #expect(try table.path(of: file) == "dir/f.txt")
        #expect(try table.path(of: dir, "new") == "dir/new")
        #expect(table.remember(parent: dir, name: "f.txt") == file)
    }

    @Test func forgetRemovesAfterTheLastReference() throws {
        var table = NodeTable()
        let file = table.remember(parent: NodeTable.rootID, name: "f")
        _ = table.remember(parent: NodeTable.rootID, name: "f")
        table.forget(file, count: 1)
        #expect(try table.path(of: file) == "f")
        table.forget(file, count: 1)
        #expect(throws: Errno(ESTALE)) { try table.path(of: file) }
        #expect(table.remember(parent: NodeTable.rootID, name: "f") != file)
        table.forget(NodeTable.rootID, count: 100)
        #expect(try table.path(of: NodeTable.rootID) == "")
    }

    @Test func renameMovesTheSubtreeAndReplacesTheTarget() throws {
        var table = NodeTable()
        let dir = table.remember(parent: NodeTable.rootID, name: "dir")
        let inner = table.remember(parent: dir, name: "inner")
        let target = table.remember(parent: NodeTable.rootID, name: "target")
        let sibling = table.remember(parent: NodeTable.rootID, name: "dir.tmp")
        table.move(parent: NodeTable.rootID, name: "dir", to: NodeTable.rootID, newName: "target")
        #expect(try table.path(of: inner) == "target/inner")
        #expect(try table.path(of: sibling) == "dir.tmp")
        #expect(throws: Errno(ENOENT)) { try table.path(of: target) }
        #expect(table.remember(parent: NodeTable.rootID, name: "target") == dir)
    }

    @Test func exchangeSwapsNames() throws {
        var table = NodeTable()
        let a = table.remember(parent: NodeTable.rootID, name: "a")
        let b = table.remember(parent: NodeTable.rootID, name: "b")
        table.exchange(parent: NodeTable.rootID, name: "a", with: NodeTable.rootID, otherName: "b")
        #expect(try table.path(of: a) == "b")
        #expect(try table.path(of: b) == "a")
    }

    @Test func unlinkDetachesButKeepsTheNodeUntilForgotten() throws {
        var table = NodeTable()
        let file = table.remember(parent: NodeTable.rootID, name: "f")
        table.detach(parent: NodeTable.rootID, name: "f")
        #expect(throws: Errno(ENOENT)) { try table.path(of: file) }
        let again = table.remember(parent: NodeTable.rootID, name: "f")
        #expect(again != file)
        table.forget(file, count: 1)
        #expect(try table.path(of: again) == "f")
    }

    /// An answer asked before a write and recorded after it would be served as fresh: the
    /// generation taken with the question keeps it out.
    @Test func anAnswerFromBeforeAWriteIsNotKept() {
        var table = NodeTable()
        let file = table.remember(parent: NodeTable.rootID, name: "f")
        var old = stat()
        old.st_size = 0
        let asked = table.generation(of: file)!
        table.invalidate(file)
        table.record(old, of: file, at: .seconds(1), generation: asked)
        #expect(table.cached(file, at: .seconds(1), within: .seconds(1)) == nil)

        var fresh = stat()
        fresh.st_size = 5
        table.record(fresh, of: file, at: .seconds(2), generation: table.generation(of: file))
        #expect(table.cached(file, at: .seconds(2), within: .seconds(1))?.attributes.st_size == 5)
        #expect(table.cached(file, at: .seconds(4), within: .seconds(1)) == nil)
    }
}
