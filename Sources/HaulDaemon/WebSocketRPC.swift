import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// The WebSocket clients connected to `/jsonrpc`, to which aria2's notifications go.
final class NotificationHub: Sendable {
    private let channels = NIOLockedValueBox([ObjectIdentifier: any Channel]())

    func add(_ channel: any Channel) {
        channels.withLockedValue { $0[ObjectIdentifier(channel)] = channel }
    }

    func remove(_ channel: any Channel) {
        _ = channels.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Sends `{"jsonrpc":"2.0","method":…,"params":[{"gid":…}]}` to every client.
    func broadcast(_ method: String, gid: String) {
        let object: [String: Any] = ["jsonrpc": "2.0", "method": method, "params": [["gid": gid]]]
        guard let data = try? JSONSerialization.data(withJSONObject: object) else { return }
        for channel in channels.withLockedValue({ Array($0.values) }) {
            let buffer = channel.allocator.buffer(bytes: data)
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: buffer), promise: nil)
        }
    }
}

/// JSON-RPC over one WebSocket: each text message is a request (or batch), answered on the
/// same socket; notifications arrive through the hub.
///
/// Requests are answered one at a time, each only once the socket takes more (its send buffer
/// under NIO's high-water mark), and the socket is read only while few requests wait: a client
/// that sends without reading its answers holds a bounded amount of the daemon's memory.
final class WebSocketRPCHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    /// Requests that may wait for their turn before the socket is no longer read.
    static let maximumWaiting = 16
    private var waiting: [Data] = []
    private var answering = false
    private var readHeld = false

    private let service: RPCService
    private let hub: NotificationHub
    private let maximumBytes: Int
    private let unauthorizedDelay: TimeAmount
    private var message = Data()
    /// A message's first frame came without `fin`: continuation frames follow.
    private var inMessage = false
    /// A close frame went out: what still arrives is dropped.
    private var closing = false

    init(service: RPCService, hub: NotificationHub, maximumBytes: Int, unauthorizedDelay: TimeAmount) {
        self.service = service
        self.hub = hub
        self.maximumBytes = maximumBytes
        self.unauthorizedDelay = unauthorizedDelay
    }

    func handlerAdded(context: ChannelHandlerContext) {
        hub.add(context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        hub.remove(context.channel)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard !closing else { return }
        // RFC 6455 §5.1–5.4: a client masks every frame, sets no reserved bit (no extension was
        // agreed), uses only the defined opcodes, and continues only a message it began.
        let fragmentOK: Bool
        switch frame.opcode {
        case .continuation: fragmentOK = inMessage
        case .text, .binary: fragmentOK = !inMessage
        default: fragmentOK = true
        }
        guard frame.maskKey != nil, !frame.rsv1, !frame.rsv2, !frame.rsv3, fragmentOK else {
            close(context, code: .protocolError)
            return
        }
        switch frame.opcode {
        case .text, .continuation, .binary:
            inMessage = !frame.fin
            var bytes = frame.unmaskedData
            message.append(contentsOf: bytes.readBytes(length: bytes.readableBytes) ?? [])
            guard message.count <= maximumBytes else {
                close(context, code: .messageTooLarge)
                return
            }
            guard frame.fin else { return }
            waiting.append(message)
            message = Data()
            answerNext(context)
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)),
                                  promise: nil)
        case .connectionClose:
            close(context, code: .normalClosure)
        case .pong:
            break
        default:
            close(context, code: .protocolError)
        }
    }

    func read(context: ChannelHandlerContext) {
        guard waiting.count < Self.maximumWaiting else {
            readHeld = true
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        answerNext(context)
        context.fireChannelWritabilityChanged()
    }

    /// Answers the oldest waiting request, if none is being answered and the socket takes more.
    private func answerNext(_ context: ChannelHandlerContext) {
        guard !answering, context.channel.isActive, context.channel.isWritable, !waiting.isEmpty else { return }
        let payload = waiting.removeFirst()
        if readHeld, waiting.count < Self.maximumWaiting {
            readHeld = false
            context.read()
        }
        answering = true
        let channel = context.channel
        let service = self.service
        let delay = unauthorizedDelay
        let loop = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        service.downloads.queue.async {
            let (answer, unauthorized) = service.handle(payload)
            loop.eventLoop.execute {
                let frame = WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(bytes: answer))
                // Wrong tokens are answered slowly here too.
                let wait = unauthorized ? delay : .zero
                channel.eventLoop.scheduleTask(in: wait) {
                    let (handler, context) = loop.value
                    channel.writeAndFlush(frame, promise: nil)
                    handler.answering = false
                    handler.answerNext(context)
                }
            }
        }
    }

    private func close(_ context: ChannelHandlerContext, code: WebSocketErrorCode) {
        guard !closing else { return }
        closing = true
        var buffer = context.channel.allocator.buffer(capacity: 2)
        buffer.write(webSocketErrorCode: code)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}
