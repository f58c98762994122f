import CHaulSystem
import Glibc
import Testing

@Suite("Socket watch")
struct EpollWatchTests {
    @Test("Removing a socket that is already closed, or was never watched, is no error; watching a closed one is")
    func removeAfterClose() throws {
        let epoll = chaul_epoll_create()
        try #require(epoll >= 0)
        defer { _ = close(epoll) }
        var pair: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { _ = close(pair[1]) }
        #expect(chaul_epoll_watch(epoll, pair[0], 1, 0) == 0)
        #expect(chaul_epoll_watch(epoll, pair[0], 1, 1) == 0)
        // curl reports some sockets removed only after it closed them.
        _ = close(pair[0])
        #expect(chaul_epoll_watch(epoll, pair[0], 0, 0) == 0)
        #expect(chaul_epoll_watch(epoll, pair[1], 0, 0) == 0, "never watched")
        #expect(chaul_epoll_watch(epoll, pair[0], 1, 0) == -1, "a closed descriptor cannot be watched")
    }
}
