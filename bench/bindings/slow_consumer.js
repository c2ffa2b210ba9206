'use strict'
// Backpressure check for the Node binding (not run in CI: it takes as long
// as the data takes at the consumer's rate).
//
//   node bench/bindings/slow_consumer.js [BYTES] [RATE_BYTES_PER_S]
//
// Defaults: 1 GB into a consumer that reads 1 MB/s, so about 17 minutes.
// A child process receives and consumes at RATE (pause/resume on the
// stream); this process writes BYTES as fast as write()/'drain' allow. Both
// sample their RSS every second; the result is the peak RSS of each side,
// which stays bounded only if a full reader closes the window all the way
// back to the writer. Loopback only.
const { fork } = require('child_process')
const path = require('path')
const utp = require(process.env.UTP_MODULE || path.join(__dirname, '..', '..', 'bindings-node'))

const MB = 1e6
const [bytesArg, rateArg, role, portArg] = process.argv.slice(2)
const BYTES = Number(bytesArg || 1e9)
const RATE = Number(rateArg || 1 * MB)

function rssSampler () {
  const s = { peak: 0, samples: [] }
  const t0 = Date.now()
  const take = () => {
    const r = process.memoryUsage().rss
    s.peak = Math.max(s.peak, r)
    s.samples.push([(Date.now() - t0) / 1000, r])
  }
  take()
  s.timer = setInterval(take, 1000)
  return s
}

if (role === 'consumer') {
  const rss = rssSampler()
  const server = utp.net.createServer((socket) => {
    server.close()
    const t0 = Date.now()
    let got = 0
    socket.on('data', (b) => {
      got += b.length
      const ahead = got / RATE - (Date.now() - t0) / 1000
      if (ahead > 0) {
        socket.pause()
        setTimeout(() => socket.resume(), ahead * 1000)
      }
    })
    socket.on('end', () => {
      clearInterval(rss.timer)
      process.send({ got, secs: (Date.now() - t0) / 1000, peakRss: rss.peak, samples: rss.samples })
      socket.end()
    })
  })
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
} else {
  const child = fork(__filename, [String(BYTES), String(RATE), 'consumer'])
  child.on('message', (m) => {
    if (m.port) return produce(m.port)
    clearInterval(rss.timer)
    const mb = (x) => (x / 1048576).toFixed(1)
    console.log(`received ${m.got} of ${BYTES} bytes in ${m.secs.toFixed(0)} s ` +
      `(${(m.got / m.secs / MB).toFixed(2)} MB/s, consumer rate ${RATE / MB} MB/s)`)
    console.log(`peak RSS: writer ${mb(rss.peak)} MiB, consumer ${mb(m.peakRss)} MiB`)
    const last = (s) => mb(s[s.length - 1][1])
    console.log(`RSS at the end: writer ${last(rss.samples)} MiB, consumer ${last(m.samples)} MiB`)
    process.exitCode = m.got === BYTES ? 0 : 1
  })
  const rss = rssSampler()
  function produce (port) {
    const chunk = Buffer.alloc(1 << 20, 7)
    let left = BYTES
    const socket = utp.net.connect(port, '127.0.0.1')
    socket.on('error', (e) => { console.error(e.message); process.exit(1) })
    socket.resume()
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        left -= n
        if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return socket.once('drain', pump)
      }
      socket.end()
    }
    pump()
  }
}
