import Glibc
import NetUseCore
import Testing

/// The /proc scanner over a made-up /proc: symlinks and text files, as the kernel shows them.
@Suite struct ActivityProbeTests {
    let root: String
    let mountpoint = "/run/netuse/q"

    init() throws {
        var template = Array("/tmp/netuse-proc-XXXXXX".utf8CString)
        root = String(cString: mkdtemp(&template)!)
    }

    private func process(_ pid: Int32, command: String, cwd: String = "/", exe: String = "/usr/bin/x",
                         fds: [String] = [], maps: [String] = []) {
        let base = "\(root)/\(pid)"
        mkdir(base, 0o755)
        mkdir(base + "/fd", 0o755)
        write(base + "/comm", command + "\n")
        symlink(cwd, base + "/cwd")
        symlink("/", base + "/root")
        symlink(exe, base + "/exe")
        for (index, target) in fds.enumerated() { symlink(target, "\(base)/fd/\(index)") }
        write(base + "/maps", maps.map { "7f0000000000-7f0000001000 r--s 00000000 00:3e 12                         \($0)" }
                .joined(separator: "\n") + "\n")
    }

    private func write(_ path: String, _ text: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        close(fd)
    }

    @Test func findsEachKindOfUseOnTheMountOnly() {
        defer { system("rm -rf \(root)") }
        process(10, command: "bash", cwd: "/run/netuse/q/dir")
        process(11, command: "sleep", fds: ["/run/netuse/q/held.txt", "/dev/null", "/run/netuse/qq/other"])
        process(12, command: "python3", maps: ["/run/netuse/q/lib.so", "/run/netuse/q/lib.so", "/usr/lib/libc.so.6",
                                                "/run/netuse/q/gone.bin (deleted)"])
        process(13, command: "napper", exe: "/run/netuse/q/napper", maps: ["/run/netuse/q/napper"])
        process(14, command: "innocent", cwd: "/run/netuse/qx", fds: ["/run/netuse/q2/f"])
        process(15, command: "at-the-top", cwd: "/run/netuse/q")
        let uses = ActivityProbe(procRoot: root, ownPID: 99).scan(mountpoint: mountpoint)
        #expect(Set(uses) == [
            ProcessUse(pid: 10, command: "bash", how: .cwd, path: "/run/netuse/q/dir"),
            ProcessUse(pid: 11, command: "sleep", how: .open, path: "/run/netuse/q/held.txt"),
            ProcessUse(pid: 12, command: "python3", how: .mapped, path: "/run/netuse/q/lib.so"),
            ProcessUse(pid: 12, command: "python3", how: .mapped, path: "/run/netuse/q/gone.bin"),
            ProcessUse(pid: 13, command: "napper", how: .exe, path: "/run/netuse/q/napper"),
            ProcessUse(pid: 15, command: "at-the-top", how: .cwd, path: "/run/netuse/q"),
        ])
        #expect(uses.count == 6, "a file mapped twice is one use")
        #expect(Set(uses.map(\.pid)) == [10, 11, 12, 13, 15])
        #expect(uses.filter(\.holdsFiles).map(\.pid).sorted() == [11, 12, 12])
    }

    @Test func skipsItsOwnProcess() {
        defer { system("rm -rf \(root)") }
        process(20, command: "netused", cwd: "/run/netuse/q")
        #expect(ActivityProbe(procRoot: root, ownPID: 20).scan(mountpoint: mountpoint).isEmpty)
    }

    @Test func describesUsesForRefusals() {
        #expect(ProcessUse(pid: 7, command: "bash", how: .cwd, path: "/run/netuse/q").description == "pid 7 (bash): cwd /run/netuse/q")
        #expect(ProcessUse(pid: 8, command: "x", how: .uninspectable, path: nil).description.contains("cannot be inspected"))
    }
}
