import NIOCore
import NIOHTTP1

/// Answers the requests of one connection, one after another, with the raw bytes the
/// `ScenarioCore` decides: the head, then the body streamed in chunks of at most 64 KiB with
/// backpressure (the loop stops when the channel is not writable and continues when it is),
/// throttled, reset or stalled as the response says.
final class RawResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer

    /// The longest any response may take, stalls included: then the connection closes.
    static let responseLimit: TimeAmount = .seconds(60)
    private static let chunkSize: Int64 = 64 * 1024

    private let core: ScenarioCore
    private let connection: Int
    private var head: HTTPRequestHead?
    /// Requests that arrived while an answer was being sent (pipelining).
    private var pending: [HTTPRequestHead] = []
    private var stream: Stream?
    private var serial = 0
    private var closed = false

    /// A response being sent.
    private struct Stream {
        var response: RawResponse
        var serial: Int
        var piece = 0
        /// Bytes of the current piece already sent.
        var offset: Int64 = 0
        /// Body bytes sent (framing not counted).
        var sent = 0
        var started: NIODeadline
        /// A timer will continue the loop, or the stream is stalled for good.
        var waiting = false
    }

    init(core: ScenarioCore, connection: Int) {
        self.core = core
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break
        case .end:
            guard let request = head else { return }
            head = nil
            pending.append(request)
            startNext(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        stream = nil
        core.connectionClosed(connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        close(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { sendNext(context: context) }
        context.fireChannelWritabilityChanged()
    }

    private func close(context: ChannelHandlerContext) {
        guard !closed else { return }
        closed = true
        stream = nil
        context.close(promise: nil)
    }

    /// Starts answering the oldest waiting request, if no answer is being sent.
    private func startNext(context: ChannelHandlerContext) {
        guard !closed, stream == nil, !pending.isEmpty else { return }
        let request = pending.removeFirst()
        let response = core.respond(to: request, connection: connection)
        serial += 1
        stream = Stream(response: response, serial: serial, started: .now())
        var buffer = context.channel.allocator.buffer(capacity: response.head.utf8.count)
        buffer.writeString(response.head)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        // Bound every response: whatever happens, the connection closes after the limit.
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let number = serial
        context.eventLoop.scheduleTask(in: Self.responseLimit) {
            let (handler, context) = bound.value
            if handler.stream?.serial == number { handler.close(context: context) }
        }
        sendNext(context: context)
    }

    /// Writes body chunks while the channel is writable, honouring rate, reset and stall.
    private func sendNext(context: ChannelHandlerContext) {
        while !closed, var stream, !stream.waiting, context.channel.isWritable {
            let response = stream.response
            guard stream.piece < response.pieces.count else {
                finish(context: context)
                return
            }
            let piece = response.pieces[stream.piece]
            let remaining = piece.count - stream.offset
            if remaining <= 0 {
                stream.piece += 1
                stream.offset = 0
                self.stream = stream
                continue
            }
            var chunk = Int(min(remaining, Self.chunkSize))
            if let limit = response.stallAfter {
                if stream.sent >= limit {
                    stall(context: context, seconds: response.stallSeconds)
                    return
                }
                chunk = min(chunk, limit - stream.sent)
            }
            if let limit = response.resetAfter {
                if stream.sent >= limit {
                    close(context: context)
                    return
                }
                chunk = min(chunk, limit - stream.sent)
            }
            if let rate = response.bytesPerSecond, rate > 0 {
                chunk = min(chunk, max(1, rate / 10))
                let due = stream.started + .nanoseconds(Int64(Double(stream.sent) / Double(rate) * 1e9))
                if due > .now() {
                    wait(until: due, context: context)
                    return
                }
            }
            // Advance before writing: a flush can re-enter `sendNext` through a writability change.
            let offset = stream.offset
            stream.offset += Int64(chunk)
            stream.sent += chunk
            let resets = response.resetAfter.map { stream.sent >= $0 } ?? false
            self.stream = resets ? nil : stream
            if resets { closed = true }
            let written = write(piece: piece, offset: offset, count: chunk, chunked: response.chunked,
                                context: context)
            if resets {
                // Close once these bytes are on the wire, so the client sees exactly `limit`.
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                written.whenComplete { _ in bound.value.close(promise: nil) }
                return
            }
        }
    }

    private func wait(until due: NIODeadline, context: ChannelHandlerContext) {
        stream?.waiting = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(deadline: due) {
            let (handler, context) = bound.value
            handler.stream?.waiting = false
            handler.sendNext(context: context)
        }
    }

    /// Stays silent (the stream keeps waiting for good), then closes after `seconds`.
    private func stall(context: ChannelHandlerContext, seconds: Int) {
        stream?.waiting = true
        guard let number = stream?.serial else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(Int64(seconds))) {
            let (handler, context) = bound.value
            if handler.stream?.serial == number { handler.close(context: context) }
        }
    }

    private func write(piece: RawResponse.Piece, offset: Int64, count: Int, chunked: Bool,
                       context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        var buffer = context.channel.allocator.buffer(capacity: count + 16)
        if chunked { buffer.writeString(String(count, radix: 16) + "\r\n") }
        switch piece {
        case .literal(let bytes):
            buffer.writeBytes(bytes[Int(offset)..<(Int(offset) + count)])
        case .content(let content, let range):
            let start = range.lowerBound + offset
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
                content.fill(UnsafeMutableRawBufferPointer(rebasing: pointer[0..<count]), from: start)
                return count
            }
        }
        if chunked { buffer.writeString("\r\n") }
        return context.writeAndFlush(wrapOutboundOut(buffer))
    }

    /// The body is complete: the chunked terminator, any junk, then close or the next request.
    private func finish(context: ChannelHandlerContext) {
        guard let response = stream?.response else { return }
        stream = nil
        var buffer = context.channel.allocator.buffer(capacity: 64)
        if response.chunked { buffer.writeString("0\r\n\r\n") }
        if response.garbage > 0 {
            let junk = Array("GARBAGE!".utf8)
            buffer.writeBytes((0..<response.garbage).map { junk[$0 % junk.count] })
        }
        let written = context.writeAndFlush(wrapOutboundOut(buffer))
        if response.close {
            closed = true
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.whenComplete { _ in bound.value.close(promise: nil) }
        } else {
            startNext(context: context)
        }
    }
}
