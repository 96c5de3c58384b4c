@testable import Backends
import Glibc
import Redirector
import Testing

/// Listings fetched ahead serve one opendir, and lookups, only while fresh, and never after a change.
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

    @Test func lookupsAreFoundInTheListingTheFirstOneClaimed() {
        let ahead = ListingAhead()
        let first = ahead.lookup("file", in: "top", within: .seconds(1))
        #expect(first.found == nil)
        let epoch = try! #require(first.claim)
        #expect(ahead.lookup("a", in: "top", within: .seconds(1)).claim == nil, "claimed twice")
        ahead.listedForLookups("top", epoch: epoch, .entries(top))
        let found = try! #require(ahead.lookup("file", in: "top", within: .seconds(1)).found)
        #expect(found.0.st_mode & S_IFMT == S_IFREG && found.1 < .seconds(1))
        // A name not in it is asked for, not denied: the server may match it another way.
        let missing = ahead.lookup("FILE", in: "top", within: .seconds(1))
        #expect(missing.found == nil && missing.claim == nil)
        // No older than the lookup allows.
        #expect(ahead.lookup("file", in: "top", within: .zero).found == nil)
        // An opendir takes it whole.
        #expect(ahead.take("top")?.map(\.name) == top.map(\.name))
    }

    @Test func aChangeForgetsTheListingLookupsUse() {
        let ahead = ListingAhead()
        let epoch = try! #require(ahead.lookup("file", in: "top", within: .seconds(1)).claim)
        ahead.forget(parentOf: "top/file")
        ahead.listedForLookups("top", epoch: epoch, .entries(top))
        let after = ahead.lookup("file", in: "top", within: .seconds(1))
        #expect(after.found == nil)
        let again = try! #require(after.claim, "the forgotten claim is claimed again")
        ahead.listedForLookups("top", epoch: again, .entries(top))
        ahead.forget(parentOf: "top/a")
        #expect(ahead.lookup("file", in: "top", within: .seconds(1)).found == nil)
    }

    @Test func aDirectoryTooLargeIsNotFetchedAgainForALifetime() {
        let ahead = ListingAhead()
        let epoch = try! #require(ahead.lookup("x", in: "big", within: .seconds(1)).claim)
        ahead.listedForLookups("big", epoch: epoch, .tooLarge)
        let next = ahead.lookup("y", in: "big", within: .seconds(1))
        #expect(next.found == nil && next.claim == nil)
    }

    @Test func lookupsHoldABoundedNumberOfListings() {
        let ahead = ListingAhead()
        for n in 0..<ListingAhead.mostHeldForLookups {
            let epoch = try! #require(ahead.lookup("f", in: "d\(n)", within: .seconds(1)).claim)
            ahead.listedForLookups("d\(n)", epoch: epoch, .entries(top))
        }
        #expect(ahead.lookup("f", in: "one-more", within: .seconds(1)).claim == nil)
        ahead.forget("d0")
        #expect(ahead.lookup("f", in: "one-more", within: .seconds(1)).claim != nil)
    }
}
