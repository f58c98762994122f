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
final class WebSocketRPCHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let service: RPCService
    private let hub: NotificationHub
    private let maximumBytes: Int
    private let unauthorizedDelay: TimeAmount
    private var message = Data()

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
        switch frame.opcode {
        case .text, .continuation, .binary:
            var bytes = frame.unmaskedData
            message.append(contentsOf: bytes.readBytes(length: bytes.readableBytes) ?? [])
            guard message.count <= maximumBytes else {
                close(context, code: .messageTooLarge)
                return
            }
            guard frame.fin else { return }
            let payload = message
            message = Data()
            let channel = context.channel
            let service = self.service
            let delay = unauthorizedDelay
            service.downloads.queue.async {
                let (answer, unauthorized) = service.handle(payload)
                let frame = WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(bytes: answer))
                guard unauthorized else {
                    channel.writeAndFlush(frame, promise: nil)
                    return
                }
                // Wrong tokens are answered slowly here too.
                channel.eventLoop.scheduleTask(in: delay) { channel.writeAndFlush(frame, promise: nil) }
            }
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)),
                                  promise: nil)
        case .connectionClose:
            close(context, code: .normalClosure)
        default:
            break
        }
    }

    private func close(_ context: ChannelHandlerContext, code: WebSocketErrorCode) {
        var buffer = context.channel.allocator.buffer(capacity: 2)
        buffer.write(webSocketErrorCode: code)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}
