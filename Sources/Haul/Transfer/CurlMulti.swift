import CCurl
import Dispatch
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One libcurl multi handle driven by `curl_multi_socket_action` from Dispatch sources.
///
/// Everything runs on `queue` (serial): socket readiness sources, the single long-lived timer,
/// and every call into libcurl. The thread count therefore does not grow with connections.
///
/// Sockets close through `CURLOPT_CLOSESOCKETFUNCTION`: a descriptor with live Dispatch sources
/// is closed only after every source's cancel handler has run, so a source never watches a
/// closed (or reused) descriptor.
final class CurlMulti: @unchecked Sendable {
    // Unchecked: every stored property below is read and written on `queue` only.
    let queue: DispatchQueue
    private let multi: UnsafeMutableRawPointer
    /// TLS sessions shared by every handle of this multi (curl keeps them per handle otherwise),
    /// so a download's later connections resume the first one's session instead of a full
    /// handshake. Used on `queue` only, so it needs no lock callbacks.
    let share: UnsafeMutableRawPointer?
    private let timer: DispatchSourceTimer
    private var sockets: [Int32: SocketWatch] = [:]
    private var handles: [UnsafeMutableRawPointer: CurlEasy] = [:]
    /// Depth of calls into libcurl on the stack; adding or removing handles waits until zero.
    private var driving = 0
    /// Time spent in libcurl (receiving, decrypting, and the write callbacks) since this multi
    /// was made. Every transfer of the session runs on this one queue, so when this grows about
    /// as fast as the clock, more connections cannot move more bytes.
    private(set) var busy: Duration = .zero
    private let logger: Logger

    /// The sources watching one descriptor, and whether curl asked to close it.
    private final class SocketWatch {
        var read: DispatchSourceRead?
        var write: DispatchSourceWrite?
        var pendingCancels = 0
        var closeRequested = false
    }

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
        timer.setEventHandler { [weak self] in self?.socketAction(ccurl_socket_timeout, 0) }
        timer.schedule(deadline: .distantFuture)
        timer.activate()
    }

    deinit {
        timer.cancel()
        for (_, easy) in handles { curl_multi_remove_handle(multi, easy.handle) }
        handles.removeAll()
        curl_multi_cleanup(multi)
        // Refused (and left) while a handle still uses it.
        if let share { curl_share_cleanup(share) }
        for (fd, watch) in sockets {
            watch.read?.cancel()
            watch.write?.cancel()
            if watch.closeRequested { _ = close(fd) }
        }
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
        curl_multi_remove_handle(multi, easy.handle)
    }

    /// Pauses or continues both directions of `easy`. curl may deliver buffered data from inside
    /// this call, so it counts as driving (handle changes wait).
    func setPaused(_ easy: CurlEasy, _ paused: Bool) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard handles[easy.handle] != nil else { return }
        driving += 1
        let code = curl_easy_pause(easy.handle, paused ? ccurl_pause_all : ccurl_pause_cont)
        driving -= 1
        if code != CURLE_OK {
            logger.debug("curl_easy_pause failed (the transfer ends with this code)", metadata: ["code": "\(code.rawValue)"])
        }
        if !paused {
            // A transfer whose last bytes were held while paused may have nothing left to read
            // from its socket: let curl run its timers so it completes instead of waiting.
            socketAction(ccurl_socket_timeout, 0)
        } else {
            drainMessages()
        }
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

    private func setTimer(milliseconds: Int) {
        if milliseconds < 0 {
            timer.schedule(deadline: .distantFuture)
        } else {
            timer.schedule(deadline: .now() + .milliseconds(milliseconds))
        }
    }

    // MARK: Sockets

    private func watch(_ fd: Int32, what: Int32) {
        let watch = sockets[fd] ?? { let w = SocketWatch(); sockets[fd] = w; return w }()
        let wantRead = what == CURL_POLL_IN || what == CURL_POLL_INOUT
        let wantWrite = what == CURL_POLL_OUT || what == CURL_POLL_INOUT
        if wantRead, watch.read == nil {
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [weak self] in self?.socketAction(fd, CURL_CSELECT_IN) }
            source.setCancelHandler { [weak self] in self?.sourceCancelled(fd) }
            watch.read = source
            source.activate()
        } else if !wantRead, let source = watch.read {
            watch.read = nil
            watch.pendingCancels += 1
            source.cancel()
        }
        if wantWrite, watch.write == nil {
            let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [weak self] in self?.socketAction(fd, CURL_CSELECT_OUT) }
            source.setCancelHandler { [weak self] in self?.sourceCancelled(fd) }
            watch.write = source
            source.activate()
        } else if !wantWrite, let source = watch.write {
            watch.write = nil
            watch.pendingCancels += 1
            source.cancel()
        }
        forgetIfIdle(fd)
    }

    private func sourceCancelled(_ fd: Int32) {
        guard let watch = sockets[fd] else { return }
        watch.pendingCancels -= 1
        if watch.closeRequested, watch.pendingCancels == 0 {
            sockets[fd] = nil
            _ = close(fd)
        } else {
            forgetIfIdle(fd)
        }
    }

    private func forgetIfIdle(_ fd: Int32) {
        guard let watch = sockets[fd], watch.read == nil, watch.write == nil,
              watch.pendingCancels == 0, !watch.closeRequested else { return }
        sockets[fd] = nil
    }

    /// curl wants `fd` closed: close now, or once the sources watching it are cancelled.
    fileprivate func closeSocket(_ fd: Int32) -> Int32 {
        guard let watch = sockets[fd] else { return close(fd) }
        watch.closeRequested = true
        if let source = watch.read { watch.read = nil; watch.pendingCancels += 1; source.cancel() }
        if let source = watch.write { watch.write = nil; watch.pendingCancels += 1; source.cancel() }
        if watch.pendingCancels == 0 {
            sockets[fd] = nil
            return close(fd)
        }
        return 0
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
