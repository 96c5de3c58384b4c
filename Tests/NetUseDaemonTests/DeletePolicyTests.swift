@testable import NetUseDaemon
import NetUseCore
import Testing

/// The delete rules with a made-up process list and a clock that is only a number.
@Suite struct DeletePolicyTests {
    private let mount = "/run/netuse/0/q"
    private let start: Duration = .seconds(100)

    private func use(_ how: ProcessUse.How, _ name: String = "f.txt", pid: Int32 = 42) -> ProcessUse {
        ProcessUse(pid: pid, command: "cmd", how: how, path: how == .uninspectable ? nil : mount + "/" + name)
    }

    private func held(_ name: String) -> DeletePolicy.Held {
        DeletePolicy.Held(path: mount + "/" + name, description: "pid 7 (cmd): open \(mount)/\(name) (the kernel has not released it)")
    }

    private func code(_ decision: DeletePolicy.Decision) -> Int? {
        if case .refuse(let error) = decision { return error.code.rawValue }
        return nil
    }

    @Test func nothingActiveProceeds() {
        #expect(DeletePolicy.decide(uses: [], held: [], now: start, graceEnds: start + DeletePolicy.grace) == .proceed)
    }

    /// The KB's fix: deferred ServerOpens are not even an input, and a process the daemon may
    /// not inspect blocks nothing.
    @Test func onlyWhatProcessesHoldCounts() {
        #expect(DeletePolicy.decide(uses: [use(.uninspectable)], held: [], now: start, graceEnds: start) == .proceed)
    }

    @Test(arguments: [ProcessUse.How.open, .mapped])
    func openFilesAre2401(_ how: ProcessUse.How) {
        #expect(code(DeletePolicy.decide(uses: [use(how)], held: [held("f.txt")], now: start, graceEnds: start + .seconds(1))) == 2401)
    }

    @Test(arguments: [ProcessUse.How.cwd, .root, .exe])
    func aDirectoryOrProgramAloneIs2404(_ how: ProcessUse.How) {
        #expect(code(DeletePolicy.decide(uses: [use(how)], held: [], now: start, graceEnds: start + .seconds(1))) == 2404)
    }

    /// A running program holds its executable's FileHandle: that is the exe use, not an open file.
    @Test func aProgramsOwnHandleIsItsExecutable() {
        #expect(code(DeletePolicy.decide(uses: [use(.exe, "batch.sh")], held: [held("batch.sh")], now: start,
                                         graceEnds: start + .seconds(1))) == 2404)
    }

    /// A handle nobody is seen to hold is a RELEASE on its way: waited for, then 2401.
    @Test func anUnseenHandleGetsTheGraceThenCounts() {
        let graceEnds = start + DeletePolicy.grace
        #expect(DeletePolicy.decide(uses: [], held: [held("g.txt")], now: start, graceEnds: graceEnds) == .waitForReleases)
        #expect(DeletePolicy.decide(uses: [], held: [held("g.txt")], now: graceEnds - .milliseconds(1), graceEnds: graceEnds)
                == .waitForReleases)
        let late = DeletePolicy.decide(uses: [], held: [held("g.txt")], now: graceEnds, graceEnds: graceEnds)
        #expect(code(late) == 2401)
        if case .refuse(let error) = late { #expect(error.detail.contains { $0.contains("has not released it") }) }
        #expect(DeletePolicy.decide(uses: [], held: [], now: graceEnds, graceEnds: graceEnds) == .proceed)
    }
}
