import CCurl
import CHaulSystem
import Dispatch
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One libcurl multi handle driven by `curl_multi_socket_action` from Dispatch sources.
///
/// Everything runs on `queue` (serial): the readiness source, the single long-lived timer, and
/// every call into libcurl. The thread count therefore does not grow with connections.
///
/// curl's sockets are watched by one epoll descriptor of this multi, and Dispatch watches that
/// one descriptor: when any socket is ready, one event on `queue` hands curl every ready socket
/// at once. (A Dispatch source per socket made Dispatch's event thread wake a worker, and be
/// woken to re-arm the source, for every socket event: some ten thousand context switches for
/// a 256 MiB download on sixteen connections limited to 8 MiB/s each.)
///
/// Sockets close through `CURLOPT_CLOSESOCKETFUNCTION`: a descriptor leaves the epoll set
/// before it is closed, so a later event never names a closed (or reused) descriptor.
final class CurlMulti: @unchecked Sendable {
    // Unchecked: every stored property below is read and written on `queue` only.
    let queue: DispatchQueue
    private let multi: UnsafeMutableRawPointer
    /// TLS sessions shared by every handle of this multi (curl keeps them per handle otherwise),
    /// so a download's later connections resume the first one's session instead of a full
    /// handshake. Used on `queue` only, so it needs no lock callbacks.
    let share: UnsafeMutableRawPointer?
    private let timer: DispatchSourceTimer
    /// When `timer` is set to fire (nil: not set).
    private var timerDue: DispatchTime?
    /// The epoll descriptor watching curl's sockets, and Dispatch's source watching it.
    private let epoll: Int32
    private let readiness: DispatchSourceRead
    /// What curl wants each socket watched for (reading, writing).
    private var interest: [Int32: (read: Bool, write: Bool)] = [:]
    /// Sockets of paused transfers, out of the epoll set until they continue: the set is
    /// level-triggered, and curl reads nothing for a paused transfer, so its socket would be
    /// ready again at once, for as long as the pause. (curl 7.88 stops watching such a socket
    /// itself; this holds where a curl still asks for it. `LivenessTests.suspendedIsIdle`
    /// checks that a suspended download's loop stays idle.)
    private var held: Set<Int32> = []
    private var handles: [UnsafeMutableRawPointer: CurlEasy] = [:]
    /// Depth of calls into libcurl on the stack; adding or removing handles waits until zero.
    private var driving = 0
    /// Time spent in libcurl (receiving, decrypting, and the write callbacks) since this multi
    /// was made. Every transfer of the session runs on this one queue, so when this grows about
    /// as fast as the clock, more connections cannot move more bytes.
    private(set) var busy: Duration = .zero
    private let logger: Logger

    init(label: String, maxHostConnections: Int = 0, logger: Logger) {
        CurlGlobal.ensureInitialized()
        queue = DispatchQueue(label: label)
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed (out of memory?)") }
        self.multi = multi
        self.logger = logger
        share = curl_share_init()
        if let share {
            ccurl_share_setopt_long(share, CURLSHOPT_SHARE, Int(CURL_LOCK_DATA_SSL_SESSION.rawValue))
        }
        timer = DispatchSource.makeTimerSource(queue: queue)
        epoll = chaul_epoll_create()
        guard epoll >= 0 else { fatalError("epoll_create1 failed (errno \(errno))") }
        readiness = DispatchSource.makeReadSource(fileDescriptor: epoll, queue: queue)
        let me = Unmanaged.passUnretained(self).toOpaque()
        ccurl_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, me)
        ccurl_multi_setopt_socket_function(multi) { _, fd, what, userp, _ in
            Unmanaged<CurlMulti>.fromOpaque(userp!).takeUnretainedValue().watch(fd, what: what)
            return 0
        }
        ccurl_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, me)
        ccurl_multi_setopt_timer_function(multi) { _, timeout, userp in
            Unmanaged<CurlMulti>.fromOpaque(userp!).takeUnretainedValue().setTimer(milliseconds: timeout)
            return 0
        }
        ccurl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, 256)
        if maxHostConnections > 0 {
            ccurl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, maxHostConnections)
        }
        timer.setEventHandler { [weak self] in
            self?.timerDue = nil
            self?.socketAction(ccurl_socket_timeout, 0)
        }
        timer.schedule(deadline: .distantFuture)
        timer.activate()
        let epoll = epoll
        readiness.setEventHandler { [weak self] in self?.socketsReady() }
        // The epoll descriptor is closed once Dispatch has stopped watching it.
        readiness.setCancelHandler { _ = close(epoll) }
        readiness.activate()
    }

    deinit {
        timer.cancel()
        for (_, easy) in handles { curl_multi_remove_handle(multi, easy.handle) }
        handles.removeAll()
        // Closes the connections it still holds (through `closeSocket`).
        curl_multi_cleanup(multi)
        // Refused (and left) while a handle still uses it.
        if let share { curl_share_cleanup(share) }
        readiness.cancel()
    }

    /// Pointer passed to `CURLOPT_CLOSESOCKETDATA` of every easy handle of this multi.
    var closeSocketContext: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// Starts `easy`. Safe to call from inside a curl callback (it then waits for curl to return).
    func add(_ easy: CurlEasy) {
        dispatchPrecondition(condition: .onQueue(queue))
        if driving > 0 {
            queue.async { self.add(easy) }
            return
        }
        handles[easy.handle] = easy
        let code = curl_multi_add_handle(multi, easy.handle)
        if code != CURLM_OK {
            handles[easy.handle] = nil
            easy.finished(CURLE_FAILED_INIT)
        }
    }

    /// Stops `easy` without a completion callback. Safe to call from inside a curl callback.
    func remove(_ easy: CurlEasy) {
        dispatchPrecondition(condition: .onQueue(queue))
        if driving > 0 {
            queue.async { self.remove(easy) }
            return
        }
        guard handles.removeValue(forKey: easy.handle) != nil else { return }
        detach(easy)
    }

    /// Pauses or continues both directions of `easy`. curl may deliver buffered data from inside
    /// this call, so it counts as driving (handle changes wait).
    func setPaused(_ easy: CurlEasy, _ paused: Bool) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard handles[easy.handle] != nil else { return }
        let socket = activeSocket(of: easy)
        if !paused { release(socket) }
        driving += 1
        let code = curl_easy_pause(easy.handle, paused ? ccurl_pause_all : ccurl_pause_cont)
        driving -= 1
        if code != CURLE_OK {
            logger.debug("curl_easy_pause failed (the transfer ends with this code)", metadata: ["code": "\(code.rawValue)"])
            // curl returns a write callback's refusal from here without ending the transfer or
            // watching its socket again (a transfer whose range was complete refuses the rest
            // of an open-ended response): it would sit until some timeout. It ends here.
            if !paused {
                end(easy, code)
                return
            }
        }
        if paused, socket >= 0, interest[socket] != nil, held.insert(socket).inserted {
            _ = chaul_epoll_watch(epoll, socket, 0, 0)
        }
        if !paused {
            // A transfer whose last bytes were held while paused may have nothing left to read
            // from its socket: let curl run its timers so it completes instead of waiting.
            socketAction(ccurl_socket_timeout, 0)
        } else {
            drainMessages()
        }
    }


    /// Ends `easy` as curl ends a transfer whose write callback refused its bytes
    /// (`CURLE_WRITE_ERROR`), for a refusal found outside a callback.
    func refuse(_ easy: CurlEasy) {
        dispatchPrecondition(condition: .onQueue(queue))
        end(easy, CURLE_WRITE_ERROR)
    }

    /// Takes `easy` out of the multi and reports it finished with `code`, as curl does for a
    /// transfer that ends.
    private func end(_ easy: CurlEasy, _ code: CURLcode) {
        if driving > 0 {
            queue.async { self.end(easy, code) }
            return
        }
        guard handles.removeValue(forKey: easy.handle) != nil else { return }
        detach(easy)
        easy.finished(code)
    }

    /// Takes `easy` out of curl's multi. A socket held out of the epoll set for it (paused)
    /// goes back as curl last asked, if curl keeps it for another transfer.
    private func detach(_ easy: CurlEasy) {
        let socket = activeSocket(of: easy)
        curl_multi_remove_handle(multi, easy.handle)
        release(socket)
    }

    /// The socket `easy` transfers on now, or -1.
    private func activeSocket(of easy: CurlEasy) -> curl_socket_t {
        var socket: curl_socket_t = -1
        return ccurl_easy_getinfo_socket(easy.handle, CURLINFO_ACTIVESOCKET, &socket) == CURLE_OK ? socket : -1
    }

    /// A socket held out of the epoll set goes back in, watched as curl last asked.
    private func release(_ socket: curl_socket_t) {
        guard socket >= 0, held.remove(socket) != nil, let wanted = interest[socket] else { return }
        _ = chaul_epoll_watch(epoll, socket, wanted.read ? 1 : 0, wanted.write ? 1 : 0)
    }

    // MARK: Driving

    private func socketAction(_ fd: Int32, _ flags: Int32) {
        var running: Int32 = 0
        let began = ContinuousClock.now
        driving += 1
        curl_multi_socket_action(multi, fd, flags, &running)
        driving -= 1
        drainMessages()
        busy += ContinuousClock.now - began
    }

    private func drainMessages() {
        var left: Int32 = 0
        while let message = curl_multi_info_read(multi, &left) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
            let result = ccurl_msg_result(message)
            curl_multi_remove_handle(multi, handle)
            handles.removeValue(forKey: handle)?.finished(result)
        }
    }

    /// curl names its next timeout after nearly every call. Setting the timer wakes Dispatch's
    /// event thread (about half the context switches of a download limited per connection), so a
    /// timer already set to fire no later than asked is kept: firing early is harmless, as curl
    /// then handles what is due and names its next timeout again. "No timeout" (-1) leaves a set
    /// timer to fire once for nothing, which costs no more than cancelling it.
    private func setTimer(milliseconds: Int) {
        guard milliseconds >= 0 else { return }
        let due = DispatchTime.now() + .milliseconds(milliseconds)
        if let set = timerDue, set <= due { return }
        timerDue = due
        timer.schedule(deadline: due)
    }

    // MARK: Sockets

    /// curl's socket callback: what to watch `fd` for (`CURL_POLL_IN`, `_OUT`, `_INOUT`, or
    /// `_REMOVE`).
    private func watch(_ fd: Int32, what: Int32) {
        let read = what == CURL_POLL_IN || what == CURL_POLL_INOUT
        let write = what == CURL_POLL_OUT || what == CURL_POLL_INOUT
        interest[fd] = read || write ? (read, write) : nil
        if !(read || write) { held.remove(fd) }
        // A held socket is watched again, as curl last asked, when its transfer continues.
        guard !held.contains(fd) else { return }
        if chaul_epoll_watch(epoll, fd, read ? 1 : 0, write ? 1 : 0) != 0 {
            // curl learns of a socket it cannot wait on from its own timeouts.
            logger.warning("could not watch a socket", metadata: ["fd": "\(fd)", "errno": "\(errno)"])
        }
    }

    /// Hands curl every socket that is ready now (up to 64 per event; level-triggered, so the
    /// rest wake the source again).
    private func socketsReady() {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 128) { buffer in
            guard let fds = buffer.baseAddress else { return }
            let flags = fds + 64
            let count = Int(chaul_epoll_ready(epoll, fds, flags, 64))
            for index in 0..<max(0, count) where interest[fds[index]] != nil && !held.contains(fds[index]) {
                // A socket curl closed while handling an earlier one of this batch is not named.
                socketAction(fds[index], flags[index])
            }
        }
    }

    /// curl wants `fd` closed: it leaves the epoll set first.
    fileprivate func closeSocket(_ fd: Int32) -> Int32 {
        held.remove(fd)
        if interest.removeValue(forKey: fd) != nil { _ = chaul_epoll_watch(epoll, fd, 0, 0) }
        return close(fd)
    }

    /// The C callback for `CURLOPT_CLOSESOCKETFUNCTION`; its context is `closeSocketContext`.
    static let closeSocketCallback: curl_closesocket_callback = { context, fd in
        Unmanaged<CurlMulti>.fromOpaque(context!).takeUnretainedValue().closeSocket(fd)
    }
}

/// `curl_global_init` exactly once per process, before any handle is made.
enum CurlGlobal {
    private static let initialized: Bool = {
        curl_global_init(ccurl_global_all) == CURLE_OK
    }()

    static func ensureInitialized() {
        precondition(initialized, "curl_global_init failed")
    }
}
