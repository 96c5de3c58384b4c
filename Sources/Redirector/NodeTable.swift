import Glibc
import NetUseCore

/// The kernel's inode numbers mapped to paths on the share, the way libfuse's high-level
/// node table does it: a node knows its parent and its name, so a rename moves a whole
/// subtree by changing one node. Not thread-safe: the Redirector keeps it behind a Mutex.
struct NodeTable {
    static let rootID: UInt64 = 1

    private struct Node {
        var parent: UInt64
        var name: String
        /// How many times the kernel was told of this node and has not forgotten it.
        var lookups: UInt64
        /// False once unlinked or replaced: the node lives on for open handles, not by name.
        var attached: Bool
        /// What the share last said of the node, and when: the kernel trusts the same
        /// answer for the attribute timeout, and so may an open.
        var attributes: stat? = nil
        var fetched: Duration = .zero
        /// Counts writes through the drive: attributes fetched before one are not recorded.
        var generation: UInt64 = 0
    }

    private struct Key: Hashable {
        let parent: UInt64
        let name: String
    }

    private var nodes: [UInt64: Node] = [rootID: Node(parent: rootID, name: "", lookups: 1, attached: true)]
    private var byName: [Key: UInt64] = [:]
    private var nextID: UInt64 = rootID + 1

    /// The node's path on the share; ENOENT once it was unlinked, ESTALE if the kernel
    /// names a node it already forgot.
    func path(of id: UInt64) throws(Errno) -> String {
        if id == Self.rootID { return "" }
        var components: [String] = []
        var current = id
        while current != Self.rootID {
            guard let node = nodes[current] else { throw Errno(ESTALE) }
            guard node.attached else { throw Errno(ENOENT) }
            components.append(node.name)
            current = node.parent
        }
        return components.reversed().joined(separator: "/")
    }

    func path(of parent: UInt64, _ name: String) throws(Errno) -> String {
        let base = try path(of: parent)
        return base.isEmpty ? name : base + "/" + name
    }

    /// Records one more kernel reference to `parent/name`, making the node if it is new.
    mutating func remember(parent: UInt64, name: String) -> UInt64 {
        let key = Key(parent: parent, name: name)
        if let id = byName[key] {
            nodes[id]!.lookups += 1
            return id
        }
        let id = nextID
        nextID += 1
        nodes[id] = Node(parent: parent, name: name, lookups: 1, attached: true)
        byName[key] = id
        return id
    }

    mutating func forget(_ id: UInt64, count: UInt64) {
        guard id != Self.rootID, var node = nodes[id] else { return }
        node.lookups -= min(count, node.lookups)
        if node.lookups > 0 {
            nodes[id] = node
            return
        }
        nodes[id] = nil
        let key = Key(parent: node.parent, name: node.name)
        if node.attached, byName[key] == id { byName[key] = nil }
    }

    /// Records what the share said; with `generation`, only if nothing was written since
    /// the question was asked.
    mutating func record(_ attributes: stat, of id: UInt64, at now: Duration, generation: UInt64? = nil) {
        guard let node = nodes[id], generation.map({ $0 == node.generation }) ?? true else { return }
        nodes[id]!.attributes = attributes
        nodes[id]!.fetched = now
    }

    /// The node's attributes and their age, if younger than `window`.
    func cached(_ id: UInt64, at now: Duration, within window: Duration) -> (attributes: stat, age: Duration)? {
        guard let node = nodes[id], let attributes = node.attributes, now - node.fetched < window else { return nil }
        return (attributes, now - node.fetched)
    }

    /// The node now named `parent/name`, if the kernel was told of one.
    func existing(parent: UInt64, name: String) -> UInt64? {
        byName[Key(parent: parent, name: name)]
    }

    func generation(of id: UInt64) -> UInt64? {
        nodes[id]?.generation
    }

    /// Every write through the drive: a listing taken before the latest one may hold
    /// attributes older than what the kernel was told since.
    private(set) var writes: UInt64 = 0

    /// A write through the drive changed the node: what was fetched before is stale.
    mutating func invalidate(_ id: UInt64) {
        writes &+= 1
        guard nodes[id] != nil else { return }
        nodes[id]!.generation &+= 1
        nodes[id]!.attributes = nil
    }

    /// After an unlink or rmdir: the name is gone, the node stays until forgotten.
    mutating func detach(parent: UInt64, name: String) {
        guard let id = byName.removeValue(forKey: Key(parent: parent, name: name)) else { return }
        nodes[id]?.attached = false
    }

    /// After a rename: whatever stood at the target is replaced.
    mutating func move(parent: UInt64, name: String, to newParent: UInt64, newName: String) {
        detach(parent: newParent, name: newName)
        guard let id = byName.removeValue(forKey: Key(parent: parent, name: name)) else { return }
        nodes[id]!.parent = newParent
        nodes[id]!.name = newName
        byName[Key(parent: newParent, name: newName)] = id
    }

    /// After RENAME_EXCHANGE: the two names trade nodes.
    mutating func exchange(parent: UInt64, name: String, with otherParent: UInt64, otherName: String) {
        let first = byName.removeValue(forKey: Key(parent: parent, name: name))
        let second = byName.removeValue(forKey: Key(parent: otherParent, name: otherName))
        if let first {
            nodes[first]!.parent = otherParent
            nodes[first]!.name = otherName
            byName[Key(parent: otherParent, name: otherName)] = first
        }
        if let second {
            nodes[second]!.parent = parent
            nodes[second]!.name = name
            byName[Key(parent: parent, name: name)] = second
        }
    }
}
