@testable import Backends
import Glibc
import Redirector
import Testing

/// Listings fetched ahead serve one opendir, only while fresh, and never after a change.
@Suite struct ListingAheadTests {
    private func entry(_ name: String, directory: Bool) -> DirectoryEntry {
        var attributes = stat()
        attributes.st_mode = directory ? S_IFDIR | 0o755 : S_IFREG | 0o644
        return DirectoryEntry(name: name, attributes: attributes)
    }

    private var top: [DirectoryEntry] {
        [entry(".", directory: true), entry("..", directory: true), entry("a", directory: true),
         entry("b", directory: true), entry("file", directory: false)]
    }

    @Test func claimsOnlySubdirectoriesAndServesEachListingOnce() {
        let ahead = ListingAhead()
        let claims = ahead.claim(subdirectoriesOf: "top", in: top)
        #expect(claims.map(\.path) == ["top/a", "top/b"])
        #expect(ahead.claim(subdirectoriesOf: "top", in: top).isEmpty, "claimed twice")
        for claim in claims { ahead.fetched(claim.path, epoch: claim.epoch, [entry("inside", directory: false)]) }
        #expect(ahead.take("top/a")?.map(\.name) == ["inside"])
        #expect(ahead.take("top/a") == nil)
        #expect(ahead.take("top/b") != nil)
    }

    @Test func aChangeForgetsTheListingEvenWhileItIsOnItsWay() {
        let ahead = ListingAhead()
        let claims = ahead.claim(subdirectoriesOf: "", in: top)
        #expect(claims.map(\.path) == ["a", "b"])
        ahead.forget("a")
        ahead.fetched("a", epoch: claims[0].epoch, [entry("stale", directory: false)])
        #expect(ahead.take("a") == nil)
        ahead.fetched("b", epoch: claims[1].epoch, [entry("kept", directory: false)])
        ahead.forget(parentOf: "b/new-file")
        #expect(ahead.take("b") == nil)
    }

    @Test func aFailedFetchLeavesNothing() {
        let ahead = ListingAhead()
        let claims = ahead.claim(subdirectoriesOf: "", in: top)
        for claim in claims { ahead.fetched(claim.path, epoch: claim.epoch, nil) }
        #expect(ahead.take("a") == nil && ahead.take("b") == nil)
    }

    @Test func aDirectoryWithTooManySubdirectoriesIsNotWalkedAhead() {
        let many = (0...ListingAhead.mostSubdirectories).map { entry("d\($0)", directory: true) }
        #expect(ListingAhead().claim(subdirectoriesOf: "", in: many).isEmpty)
    }
}
