'use strict'
// Bulk transfer and ping-pong through a Node uTP module, for
// bench/harness.py. Same roles and reports as bench/c/utpt_bench.c.
//
//   node bench.js MODULE recv HOST PORT BYTES REPORT
//   node bench.js MODULE send HOST PORT BYTES STAMP     1 MiB writes, 'drain'
//   node bench.js MODULE pp-server HOST PORT            echo (until killed)
//   node bench.js MODULE pp-client HOST PORT COUNT SIZE key=value on stdout
//
// MODULE is a path to require: our package (bindings-node) or utp-native;
// or `tcp`, Node's own net module under the same API, for the event loop's
// ping-pong floor without uTP.
// The code uses utp-native's API, which ours provides at the top level, so
// both run the same program. Receivers check the byte count; content is
// checked by the binding's tests. Times are CLOCK_REALTIME ns.
const fs = require('fs')

const CHUNK = 1 << 20
const [mod, role, host, portArg, ...rest] = process.argv.slice(2)
const utp = mod === 'tcp' ? tcpShim : require(mod)

// utp-native's socket API (listen, 'connection', connect) over net, Nagle off.
function tcpShim () {
  const net = require('net')
  const server = net.createServer({ noDelay: true })
  return {
    on: (ev, cb) => server.on(ev, cb),
    listen: (port, host) => server.listen(port, host),
    connect: (port, host) => net.connect({ port, host, noDelay: true })
  }
}
const port = Number(portArg)

function nowNs () {
  // Date.now() has ms resolution; anchor hrtime to it once.
  return BASE_NS + (process.hrtime.bigint() - BASE_HR)
}
const BASE_HR = process.hrtime.bigint()
const BASE_NS = BigInt(Date.now()) * 1000000n

function fail (msg) {
  console.error(`bench.js: ${msg}`)
  process.exit(1)
}

function recv (want, path) {
  const sock = utp()
  let got = 0
  let first = 0n
  sock.on('connection', (conn) => {
    conn.on('data', (b) => {
      if (first === 0n) first = nowNs()
      got += b.length
    })
    conn.on('error', (e) => fail(`receiver: ${e.message}`))
    conn.on('end', () => {
      const done = nowNs()
      fs.writeFileSync(path, `bytes=${got}\nexact=${got === want ? 'yes' : 'no'}\n` +
        `first_ns=${first}\ndone_ns=${done}\n`)
      conn.end()
      const exit = () => process.exit(got === want ? 0 : 1)
      conn.on('close', exit)
      setTimeout(exit, 2000).unref()
    })
  })
  sock.listen(port, host)
}

function send (left, path) {
  fs.writeFileSync(path, `${nowNs()}\n`)
  const data = Buffer.alloc(CHUNK)
  for (let i = 0; i < CHUNK; i++) data[i] = i & 255
  const sock = utp()
  const conn = sock.connect(port, host)
  conn.on('error', (e) => fail(`sender: ${e.message}`))
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, CHUNK)
      left -= n
      if (!conn.write(n === CHUNK ? data : data.subarray(0, n))) {
        conn.once('drain', pump)
        return
      }
    }
    conn.end()
  }
  conn.on('end', () => {})
  conn.on('close', () => process.exit(0))
  conn.resume()
  pump()
}

function ppServer () {
  const sock = utp()
  sock.on('connection', (conn) => {
    conn.on('error', () => {})
    conn.pipe(conn)
  })
  sock.listen(port, host)
}

function ppClient (count, size) {
  const warm = Math.max(1, Math.floor(count / 10))
  const sock = utp()
  const conn = sock.connect(port, host)
  conn.on('error', (e) => fail(`pp-client: ${e.message}`))
  const rtts = []
  let i = 0
  let msg
  let got = []
  let gotLen = 0
  let t = 0n
  const next = () => {
    msg = Buffer.alloc(size)
    for (let k = 0; k < size; k++) msg[k] = (i * 31 + k) & 255
    got = []
    gotLen = 0
    t = process.hrtime.bigint()
    conn.write(msg)
  }
  conn.on('data', (b) => {
    got.push(b)
    gotLen += b.length
    if (gotLen < size) return
    const rtt = Number(process.hrtime.bigint() - t) / 1000
    if (!Buffer.concat(got).equals(msg)) fail('pp-client: echo differs')
    if (i >= warm) rtts.push(rtt)
    i++
    if (i < count + warm) return next()
    rtts.sort((a, b) => a - b)
    const q = (p) => rtts[Math.round((rtts.length - 1) * p)].toFixed(1)
    process.stdout.write(`count=${rtts.length}\nrtt_us_p50=${q(0.5)}\nrtt_us_p90=${q(0.9)}\n` +
      `rtt_us_p99=${q(0.99)}\nrtt_us_min=${q(0)}\nrtt_us_max=${q(1)}\n`)
    conn.destroy()
    process.exit(0)
  })
  next()
}

if (role === 'recv' && rest.length === 2) recv(Number(rest[0]), rest[1])
else if (role === 'send' && rest.length === 2) send(Number(rest[0]), rest[1])
else if (role === 'pp-server') ppServer()
else if (role === 'pp-client' && rest.length === 2) ppClient(Number(rest[0]), Number(rest[1]))
else fail('usage: node bench.js MODULE (recv|send) HOST PORT BYTES FILE | pp-server HOST PORT | pp-client HOST PORT COUNT SIZE')
