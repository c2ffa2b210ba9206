// Types of utp-socket: uTP (BEP 29) streams for Node.js.
import { Duplex } from 'stream'
import { EventEmitter } from 'events'

declare namespace utp {
  interface AddressInfo { address: string; family: string; port: number }

  /** A uTP connection: a Duplex stream, as net.Socket is. */
  interface Socket extends Duplex {
    readonly remoteAddress?: string
    readonly remotePort?: number
    readonly remoteFamily?: string
    readonly localAddress?: string
    readonly localPort?: number
    readonly bytesRead: number
    readonly bytesWritten: number
    connecting: boolean
    address (): AddressInfo | {}
    setTimeout (ms: number, callback?: () => void): this
    setNoDelay (noDelay?: boolean): this
    setKeepAlive (enable?: boolean, initialDelay?: number): this
    ref (): this
    unref (): this
    stats (): Record<string, number> | null
    setContentSize (size: number): void
    setPacketSize (size: number): void
    setInteractive (interactive: boolean): void
  }

  interface ServerOptions { allowHalfOpen?: boolean }

  /** A listening uTP port, as net.Server is. */
  interface Server extends EventEmitter {
    readonly listening: boolean
    maxConnections?: number
    listen (port?: number, host?: string, callback?: () => void): this
    listen (port?: number, callback?: () => void): this
    listen (options: { port?: number; host?: string; backlog?: number }, callback?: () => void): this
    address (): AddressInfo | null
    close (callback?: (err?: Error) => void): this
    getConnections (callback: (err: Error | null, count: number) => void): this
    ref (): this
    unref (): this
  }

  interface ConnectOptions { port: number; host?: string; allowHalfOpen?: boolean; timeout?: number }

  /** The net-style face. */
  interface Net {
    createServer (options?: ServerOptions, onConnection?: (socket: Socket) => void): Server
    createServer (onConnection?: (socket: Socket) => void): Server
    connect (port: number, host?: string, onConnect?: () => void): Socket
    connect (options: ConnectOptions, onConnect?: () => void): Socket
    createConnection (port: number, host?: string, onConnect?: () => void): Socket
    createConnection (options: ConnectOptions, onConnect?: () => void): Socket
    Socket: new (options?: { allowHalfOpen?: boolean }) => Socket
    Server: new (options?: ServerOptions, onConnection?: (socket: Socket) => void) => Server
  }

  interface RemoteInfo { address: string; family: string; port: number }

  /** utp-native's socket: one UDP port that listens, connects and carries datagrams. */
  interface UTP extends EventEmitter {
    connections: Socket[]
    maxConnections: number
    bind (port?: number, host?: string, onListening?: () => void): void
    bind (onListening?: () => void): void
    listen (port?: number, host?: string, onListening?: () => void): void
    listen (onListening?: () => void): void
    connect (port: number, host?: string): Socket
    address (): AddressInfo
    send (buf: Buffer, offset: number, len: number, port: number, host: string, cb?: (err: Error | null) => void): void
    close (onClose?: () => void): void
    firewall (yes: boolean): void
    ref (): void
    unref (): void
    on (event: 'message', listener: (msg: Buffer, rinfo: RemoteInfo) => void): this
    on (event: 'connection', listener: (socket: Socket) => void): this
    on (event: 'listening' | 'close', listener: () => void): this
    on (event: 'error', listener: (err: Error) => void): this
    on (event: string, listener: (...args: any[]) => void): this
  }

  interface Factory {
    (opts?: { allowHalfOpen?: boolean }): UTP
    new (opts?: { allowHalfOpen?: boolean }): UTP
    createServer (opts?: { allowHalfOpen?: boolean } | null, onConnection?: (socket: Socket) => void): UTP
    createServer (onConnection?: (socket: Socket) => void): UTP
    connect (port: number, host?: string, opts?: { allowHalfOpen?: boolean }): Socket
    UTP: Factory
    Socket: new (options?: { allowHalfOpen?: boolean }) => Socket
    Server: new (options?: ServerOptions, onConnection?: (socket: Socket) => void) => Server
    net: Net
    /** Open, referenced sockets and servers that keep the process alive. */
    activeHandles (): number
  }
}

declare const utp: utp.Factory
export = utp
