import Glibc
import NetUseCore
import Synchronization
import Testing

@Suite struct CourierTests {
    @Test func runsJobsInOrder() {
        let courier = Courier()
        let done = Mutex<[Int]>([])
        for index in 0..<100 { courier.send { done.withLock { $0.append(index) } } }
        courier.stop()
        #expect(done.withLock { $0 } == Array(0..<100))
    }

    @Test func stopUndoesSpeculationAndAfterItWorkIsDoneInPlace() {
        let courier = Courier()
        let gate = Monitor(false)
        let log = Mutex<[String]>([])
        courier.send { gate.withLock(when: { $0 }) { _ in } }
        courier.speculate({ log.withLock { $0.append("ran") } }, cancel: { log.withLock { $0.append("cancelled") } })
        let stopper = SystemThread { courier.stop() }
        usleep(20_000)
        gate.withLock { $0 = true }
        stopper.join()
        courier.send { log.withLock { $0.append("inline") } }
        courier.speculate({ log.withLock { $0.append("late") } }, cancel: { log.withLock { $0.append("late cancelled") } })
        #expect(log.withLock { $0 } == ["cancelled", "inline", "late cancelled"])
    }

    /// A first job racing `stop` is done by the time both return: either the courier's
    /// thread took it and stop joined that thread, or stop came first and it ran in place.
    /// (A thread started after stop looked would run it later, with nobody to join it.)
    @Test func aFirstJobRacingStopIsNeverLeftBehind() {
        for _ in 0..<5000 {
            let courier = Courier()
            let ran = Atomic(0)
            let sender = SystemThread { courier.send { ran.add(1, ordering: .relaxed) } }
            let stopper = SystemThread { courier.stop() }
            sender.join()
            stopper.join()
            #expect(ran.load(ordering: .relaxed) == 1)
        }
    }
}
