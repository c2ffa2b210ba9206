'use strict'
// uTP for Node.js. Two faces over one implementation:
//   - Node's `net` conventions: createServer, connect/createConnection,
//     Socket (a stream.Duplex with real backpressure), Server;
//   - utp-native's API: `utp()` sockets that bind, listen, connect, and send
//     plain UDP datagrams through the same port.
// The protocol runs in Rust (utp-core); readiness arrives through one
// coalesced notification per handle, never one JS call per packet.

const { Duplex } = require('stream')
const EventEmitter = require('events')
const dns = require('dns')
const net = require('net')
const native = require('./lib/native')

const R_READABLE = 1
const R_WRITABLE = 2
const R_ERROR = 8
const R_CONNECTED = 16
const R_FINISHED = 64

const READ_CHUNK = 256 * 1024
const ERRNO_CODES = { 9: 'EBADF', 32: 'EPIPE', 104: 'ECONNRESET', 110: 'ETIMEDOUT', 111: 'ECONNREFUSED', 107: 'ENOTCONN', 22: 'EINVAL' }

// An Error with `code`, from a native "CODE: message" error.
function nativeError (err, syscall, address, port) {
  const m = /^([A-Z][A-Z0-9_]+): (.*)$/s.exec(err && err.message)
  const e = new Error(m ? `${syscall} ${m[1]} ${address}:${port}` : String(err && err.message))
  if (m) { e.code = m[1]; e.errno = m[1]; e.syscall = syscall }
  e.address = address
  e.port = port
  return e
}

function connectionError (info, style, socket) {
  if (style === 'utp-native') {
    const e = new Error('UTP_' + info.code)
    e.code = 'UTP_' + info.code
    e.errno = info.errno
    return e
  }
  const e = new Error(`${info.code}: ${info.message} (${socket.remoteAddress}:${socket.remotePort})`)
  e.code = info.code
  e.errno = -info.errno
  e.syscall = socket._connected ? 'read' : 'connect'
  return e
}

// ------------------------------------------------------------------ readiness

// One queue for the process: the native side lists the ids of handles whose
// readiness may have changed, in order; this drains it on the event loop.
const watched = new Map() // id -> object with _onReady()
let liveRefs = 0
function drainReady () {
  for (const id of native.takeReady()) {
    const o = watched.get(id)
    if (o) o._onReady()
  }
}
native.setDispatcher(drainReady)

function watch (obj, handle, refed) {
  watched.set(handle.id, obj)
  handle.watch()
  if (refed) holdProcess(1)
}

function unwatch (handle, refed) {
  watched.delete(handle.id)
  if (refed) holdProcess(-1)
}

// The process stays alive while a referenced socket or server is open.
function holdProcess (delta) {
  const before = liveRefs
  liveRefs += delta
  if (before === 0 && liveRefs > 0) native.dispatcherRef()
  else if (before > 0 && liveRefs === 0) native.dispatcherUnref()
}

function isIP (host) { return net.isIP(host) !== 0 }

function wildcardFor (host) { return net.isIPv6(host) ? '::' : '0.0.0.0' }

// ------------------------------------------------------------------ Socket

class Socket extends Duplex {
  constructor (options = {}) {
    super({
      allowHalfOpen: options.allowHalfOpen === true,
      readableHighWaterMark: options.readableHighWaterMark,
      writableHighWaterMark: options.writableHighWaterMark
    })
    this._style = options._style || 'net'
    this._handle = null
    this._context = null // a private context, released with the socket
    this._pendingWrite = null
    this._pendingFinal = null
    this._wantRead = false
    this._connected = false
    this._refed = true
    this._timeoutMs = 0
    this._timer = null
    this.connecting = false
    this.bytesRead = 0
    this.bytesWritten = 0
    this.remoteAddress = undefined
    this.remotePort = undefined
    this.remoteFamily = undefined
    if (this._style === 'utp-native') {
      // utp-native reads eagerly and destroys a connection once the peer's
      // FIN arrived and our end() went out (or either, without half-open),
      // whether or not the data was consumed. Programs written for it rely
      // on that.
      this._allowOpen = options.allowHalfOpen ? 2 : 1
      this._wantRead = true
      this.once('finish', () => this._destroyMaybe())
    } else {
      // As net does: once the peer's end has been read from a socket that
      // is not half-open, a write is an error (EPIPE), never dropped.
      this.once('end', () => { if (!this.allowHalfOpen) this.write = writeAfterFIN })
    }
  }

  _destroyMaybe () {
    if (this._allowOpen && !--this._allowOpen) this.destroy()
  }

  get localAddress () { return this._handle ? this._handle.localAddress().address : undefined }
  get localPort () { return this._handle ? this._handle.localAddress().port : undefined }
  get readyState () {
    if (this.connecting) return 'opening'
    if (this.readable && this.writable) return 'open'
    if (this.readable) return 'readOnly'
    if (this.writable) return 'writeOnly'
    return 'closed'
  }

  address () {
    if (!this._handle) return {}
    return this._handle.localAddress()
  }

  _attach (stream, connected) {
    this._handle = stream
    const peer = stream.peerAddress()
    this.remoteAddress = peer.address
    this.remotePort = peer.port
    this.remoteFamily = peer.family
    watch(this, stream, this._refed)
    if (connected) {
      this._connected = true
      this.connecting = false
    }
    this._refreshTimer()
    // Readiness before the callback was registered is not replayed: look
    // now, after whatever happened before it (another handle's accept of
    // this very connection, say).
    process.nextTick(() => {
      drainReady()
      this._onReady()
      // As net does: start reading (up to the high-water mark) so that the
      // peer's end is seen even before anyone consumes data.
      if (this._handle && !this.destroyed) this.read(0)
    })
  }

  _onReady () {
    const h = this._handle
    if (!h || this.destroyed) return
    const r = h.readiness() // also re-arms the notification
    if (!this._connected && (r & R_CONNECTED)) {
      this._connected = true
      this.connecting = false
      this._refreshTimer()
      this.emit('connect')
      this.emit('ready')
      if (!this._handle) return
    }
    if (r & R_ERROR) {
      const info = h.error()
      if (info) {
        this.destroy(connectionError(info, this._style, this))
        return
      }
    }
    if (this._pendingWrite && (r & (R_WRITABLE | R_ERROR))) this._flushPending()
    if (this._wantRead && (r & R_READABLE)) this._pull()
    if (this._pendingFinal && (r & R_FINISHED)) {
      const cb = this._pendingFinal
      this._pendingFinal = null
      cb()
    }
  }

  _pull () {
    const h = this._handle
    while (h && this._wantRead && !this.destroyed) {
      const buf = h.read(READ_CHUNK)
      if (buf === null) return
      if (buf.length === 0) {
        this._wantRead = false
        this.push(null)
        // As net does: with nothing buffered, 'end' follows even if nobody
        // reads, so an ended, idle socket closes.
        process.nextTick(() => this.read(0))
        if (this._style === 'utp-native') this._destroyMaybe()
        return
      }
      this.bytesRead += buf.length
      this._refreshTimer()
      // push() false: stop reading; the handle's buffer fills and the
      // window the peer sees shrinks (real backpressure).
      if (!this.push(buf) && this._style !== 'utp-native') this._wantRead = false
    }
  }

  _read () {
    this._wantRead = true
    if (this._handle) this._pull()
  }

  _write (chunk, encoding, cb) {
    if (!this._handle) {
      this.once('_attached', () => this._write(chunk, encoding, cb))
      return
    }
    this._writeChunk(chunk, cb)
  }

  _writeChunk (chunk, cb) {
    const h = this._handle
    if (!h) return cb(this._closedError())
    const n = h.write(chunk)
    if (n < 0) {
      const info = h.error()
      return cb(info ? connectionError(info, this._style, this) : errnoError(-n, this))
    }
    this.bytesWritten += n
    this._refreshTimer()
    if (n === chunk.length) return cb()
    this._pendingWrite = { chunk: chunk.subarray(n), cb }
  }

  _flushPending () {
    const { chunk, cb } = this._pendingWrite
    this._pendingWrite = null
    this._writeChunk(chunk, cb)
  }

  _final (cb) {
    if (!this._handle) {
      this.once('_attached', () => this._final(cb))
      return
    }
    try {
      this._handle.shutdown()
    } catch (err) {
      return cb(nativeErrorFrom(err))
    }
    // utp-native finishes at once (and then destroys the connection, once
    // the peer's end is in too).
    if (this._style === 'utp-native') return cb()
    // 'finish' once the peer has acknowledged everything: a process that
    // ends a socket and exits still delivers it.
    this._pendingFinal = (err) => cb(err)
    this._onReady()
  }

  _destroy (err, cb) {
    this._clearTimer()
    const h = this._handle
    this._handle = null
    if (h) {
      unwatch(h, this._refed)
      if (err) h.abort()
      else h.close()
    }
    if (this._context) {
      this._context.release()
      this._context = null
    }
    if (this._pendingFinal) {
      const f = this._pendingFinal
      this._pendingFinal = null
      f(err || undefined)
    }
    cb(err)
  }

  _closedError () {
    const e = new Error('This socket has been closed')
    e.code = 'ERR_SOCKET_CLOSED'
    return e
  }

  setTimeout (ms, callback) {
    this._timeoutMs = ms
    if (callback) {
      if (ms === 0) this.removeListener('timeout', callback)
      else this.once('timeout', callback)
    }
    this._refreshTimer()
    return this
  }

  _refreshTimer () {
    this._clearTimer()
    if (!this._timeoutMs || this.destroyed) return
    this._timer = setTimeout(() => this.emit('timeout'), this._timeoutMs)
    if (!this._refed && this._timer.unref) this._timer.unref()
  }

  _clearTimer () {
    if (this._timer) clearTimeout(this._timer)
    this._timer = null
  }

  setNoDelay () { return this }
  setKeepAlive () { return this }

  ref () {
    if (!this._refed && this._handle) holdProcess(1)
    this._refed = true
    if (this._timer && this._timer.ref) this._timer.ref()
    return this
  }

  unref () {
    if (this._refed && this._handle) holdProcess(-1)
    this._refed = false
    if (this._timer && this._timer.unref) this._timer.unref()
    return this
  }

  // utp-native compatibility: packet sizing hints (the engine sizes
  // packets itself).
  setContentSize () {}
  setPacketSize () {}
  setInteractive () {}

  // The engine's statistics.
  stats () { return this._handle ? this._handle.stats() : null }
}

function errnoError (errno, socket) {
  const code = ERRNO_CODES[errno] || 'EIO'
  const e = new Error(`${code} (${socket.remoteAddress}:${socket.remotePort})`)
  e.code = code
  e.errno = -errno
  return e
}

function nativeErrorFrom (err) {
  const m = /^([A-Z][A-Z0-9_]+): (.*)$/s.exec(err && err.message)
  if (m) err.code = m[1]
  return err
}

// Starts the connection of `socket` from `ctx` (a native Context) once the
// host is resolved.
function startConnect (socket, ctx, port, host, ownsContext) {
  socket.connecting = true
  socket.remotePort = port
  const go = (ip) => {
    if (socket.destroyed) return
    let c = ctx
    try {
      if (!c) {
        c = new native.Context(wildcardFor(ip), 0, 0)
        socket._context = c
      }
      socket.remoteAddress = ip
      const stream = c.connect(ip, port)
      socket._attach(stream, false)
      socket.emit('_attached')
    } catch (err) {
      socket.destroy(nativeError(err, 'connect', ip, port))
    }
  }
  if (isIP(host)) process.nextTick(go, host)
  else {
    dns.lookup(host, (err, ip) => {
      if (err) return socket.destroy(err)
      go(ip)
    })
  }
  void ownsContext
}

// ------------------------------------------------------------------ net face

function normalizeConnectArgs (args) {
  let options = {}
  let cb = null
  if (typeof args[args.length - 1] === 'function') cb = args[args.length - 1]
  if (args[0] !== null && typeof args[0] === 'object') options = Object.assign({}, args[0])
  else {
    options.port = args[0]
    if (typeof args[1] === 'string') options.host = args[1]
  }
  return [options, cb]
}

function connect (...args) {
  const [options, cb] = normalizeConnectArgs(args)
  const port = Number(options.port)
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    const e = new RangeError(`Port should be > 0 and < 65536. Received ${options.port}.`)
    e.code = 'ERR_SOCKET_BAD_PORT'
    throw e
  }
  const socket = new Socket(options)
  if (options.timeout) socket.setTimeout(options.timeout)
  if (cb) socket.once('connect', cb)
  startConnect(socket, null, port, options.host || 'localhost', true)
  return socket
}

class Server extends EventEmitter {
  constructor (options, onConnection) {
    super()
    if (typeof options === 'function') { onConnection = options; options = {} }
    this._options = options || {}
    this._ctx = null
    this._connections = new Set()
    this._closing = false
    this._refed = true
    this.maxConnections = undefined
    if (onConnection) this.on('connection', onConnection)
  }

  get listening () { return this._ctx !== null && !this._closing }

  listen (...args) {
    let cb = typeof args[args.length - 1] === 'function' ? args.pop() : null
    let port = 0
    let host
    let backlog = 511 // net's default
    if (args[0] !== null && typeof args[0] === 'object') {
      port = args[0].port || 0
      host = args[0].host
      backlog = args[0].backlog || backlog
    } else {
      if (args.length > 0 && args[0] !== undefined) port = Number(args[0])
      if (typeof args[1] === 'string') host = args[1]
      if (typeof args[1] === 'number') backlog = args[1]
      if (typeof args[2] === 'number') backlog = args[2]
    }
    if (cb) this.once('listening', cb)
    const bind = (ip) => {
      try {
        this._ctx = new native.Context(ip, port, backlog)
      } catch (err) {
        this.emit('error', nativeError(err, 'listen', ip, port))
        return
      }
      this._onReady = () => this._acceptReady()
      watch(this, this._ctx, this._refed)
      this.emit('listening')
      this._acceptReady()
    }
    if (host === undefined || isIP(host)) process.nextTick(bind, host || '::')
    else dns.lookup(host, (err, ip) => (err ? this.emit('error', err) : bind(ip)))
    return this
  }

  _acceptReady () {
    const ctx = this._ctx
    if (!ctx || this._closing) return
    for (;;) {
      const stream = ctx.accept()
      if (!stream) return
      if (this.maxConnections !== undefined && this._connections.size >= this.maxConnections) {
        stream.abort()
        continue
      }
      const socket = new Socket({ allowHalfOpen: this._options.allowHalfOpen === true })
      socket._attach(stream, true)
      this._connections.add(socket)
      socket.once('close', () => {
        this._connections.delete(socket)
        this._maybeClosed()
      })
      this.emit('connection', socket)
    }
  }

  address () {
    if (!this._ctx) return null
    return this._ctx.localAddress()
  }

  getConnections (cb) {
    process.nextTick(cb, null, this._connections.size)
    return this
  }

  close (cb) {
    if (cb) {
      if (!this._ctx) {
        const e = new Error('Server is not running.')
        e.code = 'ERR_SERVER_NOT_RUNNING'
        process.nextTick(cb, e)
        return this
      }
      this.once('close', cb)
    }
    if (this._closing || !this._ctx) return this
    this._closing = true
    this._ctx.close()
    unwatch(this._ctx, this._refed)
    this._maybeClosed()
    return this
  }

  _maybeClosed () {
    if (this._closing && this._connections.size === 0 && this._ctx) {
      const ctx = this._ctx
      this._ctx = null
      ctx.release()
      process.nextTick(() => this.emit('close'))
    }
  }

  ref () {
    if (!this._refed && this._ctx && !this._closing) holdProcess(1)
    this._refed = true
    return this
  }

  unref () {
    if (this._refed && this._ctx && !this._closing) holdProcess(-1)
    this._refed = false
    return this
  }

  async [Symbol.asyncDispose] () {
    await new Promise((resolve) => this.close(() => resolve()))
  }
}

function createServer (options, onConnection) {
  return new Server(options, onConnection)
}

// ------------------------------------------------------------------ utp-native face

// `utp()`: one UDP port that listens, connects, and sends datagrams, with
// utp-native's methods, events and error messages ('UTP_ETIMEDOUT', ...).
function UTP (opts) {
  if (!(this instanceof UTP)) return new UTP(opts)
  EventEmitter.call(this)
  this.connections = []
  this.maxConnections = 0
  this._ctx = null
  this._address = null
  this._refed = true
  this._closing = false
  this._closed = false
  this._firewalled = true
  this._allowHalfOpen = !opts || opts.allowHalfOpen !== false
  this._pendingSends = 0
}
Object.setPrototypeOf(UTP.prototype, EventEmitter.prototype)

UTP.createServer = function (opts, onconnection) {
  if (typeof opts === 'function') return UTP.createServer(null, opts)
  const server = new UTP(opts)
  if (onconnection) server.on('connection', onconnection)
  return server
}

UTP.connect = function (port, host, opts) {
  const udp = new UTP(opts)
  return udp.connect(port, host).on('close', function () { udp.close() })
}

UTP.prototype.bind = function (port, ip, onlistening) {
  if (typeof port === 'function') return this.bind(0, null, port)
  if (typeof ip === 'function') return this.bind(port, null, ip)
  if (!port) port = 0
  if (!ip) ip = '0.0.0.0'
  if (this._closing) return
  if (this._address) {
    this.emit('error', new Error('Socket already bound'))
    return
  }
  if (onlistening) this.once('listening', onlistening)
  if (!isIP(ip)) {
    dns.lookup(ip, (err, addr) => (err ? this.emit('error', err) : this.bind(port, addr)))
    return
  }
  try {
    // As utp-native: no ICMP errors (connections time out instead), and
    // libutp's close (forget a connection once our FIN is acknowledged).
    this._ctx = new native.Context(ip, port, 128, true)
  } catch (err) {
    process.nextTick(() => this.emit('error', nativeError(err, 'bind', ip, port)))
    return
  }
  this._address = ip
  this._ctx.setAccepting(!this._firewalled)
  this._ctx.setDatagrams(true)
  this._onReady = () => this._ready()
  watch(this, this._ctx, this._refed)
  process.nextTick(() => this.emit('listening'))
}

UTP.prototype._ready = function () {
  const ctx = this._ctx
  if (!ctx) return
  for (;;) {
    const d = ctx.recvDatagram()
    if (!d) break
    this.emit('message', d.data, { address: d.address, family: d.family, port: d.port })
    if (!this._ctx) return
  }
  for (;;) {
    const stream = ctx.accept()
    if (!stream) break
    const conn = this._adopt(new Socket({ allowHalfOpen: this._allowHalfOpen, _style: 'utp-native' }))
    conn._attach(stream, true)
    this.emit('connection', conn)
  }
  ctx.acceptReady()
}

UTP.prototype._adopt = function (conn) {
  this.connections.push(conn)
  if (this.maxConnections && this.connections.length >= this.maxConnections) this.firewall(true)
  conn.once('close', () => {
    const i = this.connections.indexOf(conn)
    if (i !== -1) this.connections.splice(i, 1)
    if (!this.maxConnections || this.connections.length < this.maxConnections) {
      if (this._listening) this.firewall(false)
    }
    this._closeMaybe()
  })
  if (!this._refed) conn.unref()
  return conn
}

UTP.prototype.firewall = function (yes) {
  this._firewalled = !!yes
  if (this._ctx) this._ctx.setAccepting(!yes)
}

UTP.prototype.listen = function (port, ip, onlistening) {
  this._listening = true
  if (!this._address) this.bind(port, ip, onlistening)
  else if (typeof port === 'function') process.nextTick(port)
  this.firewall(false)
}

UTP.prototype.connect = function (port, ip) {
  if (!this._address) this.bind()
  if (!ip) ip = '127.0.0.1'
  const conn = this._adopt(new Socket({ allowHalfOpen: this._allowHalfOpen, _style: 'utp-native' }))
  conn.connecting = true
  conn.remotePort = port
  conn.remoteAddress = ip
  conn.remoteFamily = 'IPv4'
  const go = (addr) => {
    if (conn.destroyed) return
    if (!this._ctx) {
      // bind() is resolving or failed; try again shortly.
      if (this._closing) return conn.destroy(new Error('Socket is closed'))
      return setImmediate(go, addr)
    }
    try {
      conn.remoteAddress = addr
      conn._attach(this._ctx.connect(addr, port), false)
      conn.emit('_attached')
    } catch (err) {
      conn.destroy(nativeError(err, 'connect', addr, port))
    }
  }
  if (isIP(ip)) process.nextTick(go, ip)
  else dns.lookup(ip, { family: 4 }, (err, addr) => (err ? conn.destroy(err) : go(addr)))
  return conn
}

UTP.prototype.address = function () {
  if (!this._address || this._closing || !this._ctx) throw new Error('Socket not bound')
  const a = this._ctx.localAddress()
  return { address: this._address, family: a.family, port: a.port }
}

UTP.prototype.send = function (buf, offset, len, port, host, cb) {
  if (!cb) cb = noop
  if (!isIP(host)) {
    dns.lookup(host, { family: 4 }, (err, ip) => (err ? cb(err) : this.send(buf, offset, len, port, ip, cb)))
    return
  }
  if (this._closing) return process.nextTick(cb, new Error('Socket is closed'))
  if (!this._address) this.bind(0)
  const send = () => {
    if (!this._ctx) {
      if (this._closing) return cb(new Error('Socket is closed'))
      return setImmediate(send)
    }
    try {
      this._ctx.sendDatagram(buf.subarray(offset, offset + len), port, host)
      cb(null)
    } catch (err) {
      cb(nativeErrorFrom(err))
    }
  }
  process.nextTick(send)
}

UTP.prototype.close = function (onclose) {
  if (this._closed) {
    if (onclose) process.nextTick(() => onclose.call(this))
    return
  }
  if (onclose) this.once('close', onclose)
  if (this._closing) return
  this._closing = true
  if (this._ctx) {
    this._ctx.close()
    unwatch(this._ctx, this._refed)
  }
  this._closeMaybe()
}

UTP.prototype._closeMaybe = function () {
  if (this._closing && !this.connections.length && !this._closed) {
    this._closed = true
    const ctx = this._ctx
    this._ctx = null
    this._address = null
    if (!ctx) return process.nextTick(() => this.emit('close'))
    ctx.release()
    // As utp-native: 'close' once the port is really closed and answers
    // nothing any more (bounded, in case a connection lingers).
    const deadline = Date.now() + 5000
    const poll = () => {
      if (ctx.hasExited() || Date.now() > deadline) this.emit('close')
      else setTimeout(poll, 5)
    }
    poll()
  }
}

UTP.prototype.ref = function () {
  if (!this._refed && this._ctx && !this._closing) holdProcess(1)
  this._refed = true
  for (const c of this.connections) c.ref()
}

UTP.prototype.unref = function () {
  if (this._refed && this._ctx && !this._closing) holdProcess(-1)
  this._refed = false
  for (const c of this.connections) c.unref()
}

UTP.prototype.getRecvBufferSize = function () { return 1 << 20 }
UTP.prototype.getSendBufferSize = function () { return 1 << 20 }
UTP.prototype.setRecvBufferSize = function () {}
UTP.prototype.setSendBufferSize = function () {}
UTP.prototype.setTTL = function () {}

function noop () {}

function writeAfterFIN (chunk, encoding, cb) {
  if (typeof encoding === 'function') cb = encoding
  const err = new Error('This socket has been ended by the other party')
  err.code = 'EPIPE'
  if (typeof cb === 'function') process.nextTick(cb, err)
  this.destroy(err)
  return false
}

module.exports = UTP
module.exports.UTP = UTP
module.exports.Socket = Socket
module.exports.Server = Server
// `createServer` and `connect` at the top level are utp-native's (this
// module is a drop-in for it); `utp.net` has the net-style ones.
module.exports.net = { createServer, connect, createConnection: connect, Socket, Server }
// How many open, referenced sockets and servers keep the process alive.
module.exports.activeHandles = () => liveRefs
