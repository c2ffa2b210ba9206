'use strict'
// The net-style face: data, half-close, timeouts, error codes, many
// connections, backpressure, process lifetime. Loopback only.
const test = require('node:test')
const assert = require('node:assert')
const crypto = require('node:crypto')
const dgram = require('node:dgram')
const { spawnSync, spawn } = require('node:child_process')
const utp = require('utp-socket')
const { net } = utp

const MB = 1 << 20

function listen (server, host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, host, () => resolve(server.address().port))
  })
}

function collect (socket) {
  return new Promise((resolve, reject) => {
    const chunks = []
    socket.on('data', (d) => chunks.push(d))
    socket.on('end', () => resolve(Buffer.concat(chunks)))
    socket.on('error', reject)
  })
}

function freeUdpPort () {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4')
    s.bind(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) })
  })
}

test('echo, addresses and byte counters', async () => {
  const server = net.createServer((s) => s.pipe(s))
  const port = await listen(server)
  const c = net.connect(port, '127.0.0.1')
  await new Promise((resolve) => c.once('connect', resolve))
  assert.strictEqual(c.remoteAddress, '127.0.0.1')
  assert.strictEqual(c.remotePort, port)
  assert.strictEqual(c.remoteFamily, 'IPv4')
  assert.strictEqual(c.localAddress, '127.0.0.1')
  assert.ok(c.localPort > 0)
  c.end('hello node')
  const back = await collect(c)
  assert.strictEqual(back.toString(), 'hello node')
  assert.strictEqual(c.bytesWritten, 10)
  assert.strictEqual(c.bytesRead, 10)
  await new Promise((resolve) => server.close(resolve))
})

test('20 MB byte-exact each way at once', async () => {
  const up = crypto.randomBytes(20 * MB)
  const down = crypto.randomBytes(20 * MB)
  let serverGot
  const server = net.createServer((s) => {
    serverGot = collect(s)
    s.end(down)
  })
  const port = await listen(server)
  const c = net.connect(port, '127.0.0.1')
  const clientGot = collect(c)
  c.end(up)
  assert.ok((await clientGot).equals(down))
  assert.ok((await serverGot).equals(up))
  await new Promise((resolve) => server.close(resolve))
})

test('half-close: end() in one direction, data still flows back', async () => {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    collect(s).then((req) => s.end(Buffer.concat([Buffer.from('echo:'), req])))
  })
  const port = await listen(server)
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  c.end('question')
  assert.strictEqual((await collect(c)).toString(), 'echo:question')
  await new Promise((resolve) => server.close(resolve))
})

test('a write after the peer ended a socket that is not half-open fails with EPIPE', async () => {
  // The server ends its side at once (and sees the RESET of the destroy).
  const server = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.end() })
  const port = await listen(server)
  const c = net.connect(port, '127.0.0.1')
  c.resume()
  await new Promise((resolve) => c.once('end', resolve))
  const err = await new Promise((resolve) => {
    c.once('error', resolve)
    c.write('too late')
  })
  assert.strictEqual(err.code, 'EPIPE')
  server.close()
})

test('write() returns false, then drain', async () => {
  let release
  const held = new Promise((resolve) => { release = resolve })
  const server = net.createServer(async (s) => {
    s.pause()
    await held
    s.resume()
    s.on('data', () => {})
  })
  const port = await listen(server)
  const c = net.connect(port, '127.0.0.1')
  let sawFalse = false
  for (let i = 0; i < 400 && !sawFalse; i++) sawFalse = !c.write(Buffer.alloc(64 * 1024))
  assert.ok(sawFalse, 'write() never returned false')
  release()
  await new Promise((resolve) => c.once('drain', resolve))
  c.destroy()
  await new Promise((resolve) => server.close(resolve))
})

test('ECONNREFUSED for a closed port', async () => {
  const port = await freeUdpPort()
  const c = net.connect(port, '127.0.0.1')
  const closed = new Promise((resolve) => c.once('close', resolve))
  const err = await new Promise((resolve) => c.once('error', resolve))
  assert.strictEqual(err.code, 'ECONNREFUSED')
  await closed
})

test('ECONNRESET when the peer aborts', async () => {
  const server = net.createServer((s) => {
    s.on('error', () => {}) // our own abort
    s.once('data', () => s.destroy(new Error('abort')))
  })
  const port = await listen(server)
  const c = net.connect(port, '127.0.0.1')
  c.write('x')
  const err = await new Promise((resolve) => c.once('error', resolve))
  assert.strictEqual(err.code, 'ECONNRESET')
  await new Promise((resolve) => server.close(resolve))
})

test('ETIMEDOUT when nobody answers the handshake', { timeout: 60000 }, async () => {
  const silent = dgram.createSocket('udp4')
  await new Promise((resolve) => silent.bind(0, '127.0.0.1', resolve))
  const c = net.connect(silent.address().port, '127.0.0.1')
  const start = Date.now()
  const err = await new Promise((resolve) => c.once('error', resolve))
  assert.strictEqual(err.code, 'ETIMEDOUT')
  assert.ok(Date.now() - start < 40000)
  silent.close()
})

test('EADDRINUSE when the port is taken', async () => {
  const a = net.createServer()
  const port = await listen(a)
  const b = net.createServer()
  const err = await new Promise((resolve) => { b.once('error', resolve); b.listen(port, '127.0.0.1') })
  assert.strictEqual(err.code, 'EADDRINUSE')
  await new Promise((resolve) => a.close(resolve))
})

test('setTimeout fires on an idle socket', async () => {
  const server = net.createServer((s) => s.resume())
  const port = await listen(server)
  const c = net.connect(port, '127.0.0.1')
  c.write('hi')
  const start = Date.now()
  await new Promise((resolve) => c.setTimeout(150, resolve))
  assert.ok(Date.now() - start >= 140)
  c.destroy()
  await new Promise((resolve) => server.close(resolve))
})

test('IPv6 loopback', async () => {
  const server = net.createServer((s) => s.pipe(s))
  const port = await listen(server, '::1')
  const c = net.connect(port, '::1')
  c.end('over v6')
  assert.strictEqual((await collect(c)).toString(), 'over v6')
  assert.strictEqual(c.remoteFamily, 'IPv6')
  await new Promise((resolve) => server.close(resolve))
})

test('connections made the moment a server listens (100 in a row)', { timeout: 60000 }, async () => {
  // Datagrams are received on the event loop: a SYN that arrives right
  // after listen() must not be lost (it once stopped the watch for good).
  for (let i = 0; i < 100; i++) {
    const server = net.createServer((s) => { s.on('error', () => {}); s.end('hi') })
    const port = await listen(server)
    const c = net.connect(port, '127.0.0.1')
    const got = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection ${i} did not complete`)), 5000)
      collect(c).then((b) => { clearTimeout(timer); resolve(b) }, reject)
    })
    assert.strictEqual(got.toString(), 'hi')
    c.destroy()
    await new Promise((resolve) => server.close(resolve))
  }
})

test('500 concurrent connections', { timeout: 120000 }, async () => {
  const server = net.createServer((s) => s.pipe(s))
  const port = await listen(server)
  const n = 500
  const results = await Promise.all(Array.from({ length: n }, (_, i) => new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1')
    const msg = Buffer.from('connection ' + i)
    c.on('error', reject)
    collect(c).then((b) => resolve(b.equals(msg)), reject)
    c.end(msg)
  })))
  assert.strictEqual(results.filter(Boolean).length, n)
  await new Promise((resolve) => server.close(resolve))
})

test('a paused reader holds the sender back (real backpressure)', { timeout: 60000 }, async () => {
  let serverSocket
  const server = net.createServer((s) => { serverSocket = s; s.pause() })
  const port = await listen(server)
  const c = net.connect(port, '127.0.0.1')
  const chunk = Buffer.alloc(MB)
  let written = 0
  while (written < 64 * MB) {
    if (!c.write(chunk)) {
      const drained = await Promise.race([
        new Promise((resolve) => c.once('drain', () => resolve(true))),
        new Promise((resolve) => setTimeout(() => resolve(false), 1500))
      ])
      if (!drained) break
    }
    written += MB
  }
  assert.ok(written < 16 * MB, `the writer got ${written} bytes out while nobody read`)
  assert.ok(serverSocket.readableLength < 8 * MB)
  c.destroy()
  serverSocket.destroy()
  await new Promise((resolve) => server.close(resolve))
})

test('end() before exit still delivers; the process exits by itself', { timeout: 60000 }, async () => {
  const n = 8 * MB
  let got
  const server = net.createServer((s) => { got = collect(s) })
  const port = await listen(server)
  const child = spawn(process.execPath, ['-e', `
    const { net } = require('utp-socket')
    const c = net.connect(${port}, '127.0.0.1')
    c.end(Buffer.alloc(${n}, 7))
  `], { cwd: __dirname, stdio: 'inherit' })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  assert.strictEqual(code, 0)
  const data = await got
  assert.strictEqual(data.length, n)
  assert.ok(data.every((b) => b === 7))
  await new Promise((resolve) => server.close(resolve))
})

test('unref lets the process exit with a listener open', () => {
  const r = spawnSync(process.execPath, ['-e', `
    const { net } = require('utp-socket')
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => s.unref())
  `], { cwd: __dirname, timeout: 10000 })
  assert.strictEqual(r.status, 0)
})
