import Glibc
import NetUseCore
import Testing

@Suite struct MonitorTests {
    @Test func aWaiterRunsOnceTheStateIsReady() {
        let monitor = Monitor(0)
        let waiter = SystemThread {
            monitor.withLock(when: { $0 == 1 }) { $0 = 2 }
        }
        usleep(20_000)
        #expect(monitor.withLock { $0 } == 0)
        monitor.withLock { $0 = 1 }
        waiter.join()
        #expect(monitor.withLock { $0 } == 2)
    }

    @Test func aTimedWaitGivesUpWithoutRunningItsBody() {
        let monitor = Monitor(false)
        let start = MonotonicClock.now()
        let result = monitor.withLock(when: { $0 }, within: .milliseconds(50)) { _ in "ran" }
        #expect(result == nil)
        #expect(MonotonicClock.now() - start >= .milliseconds(50))
    }

    @Test func aTimedWaitRunsWhenTheStateBecomesReadyInTime() {
        let monitor = Monitor(false)
        let setter = SystemThread {
            usleep(20_000)
            monitor.withLock { $0 = true }
        }
        let result = monitor.withLock(when: { $0 }, within: .seconds(10)) { _ in "ran" }
        setter.join()
        #expect(result == "ran")
    }
}
