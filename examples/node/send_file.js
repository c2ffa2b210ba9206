// Send a file over uTP: node examples/node/send_file.js HOST PORT FILE
// 'close' comes once the receiver has acknowledged every byte.
const fs = require('fs')
const { net } = require('utp-socket')

const [host, port, file] = process.argv.slice(2)
const start = Date.now()
// Half-open: the receiver may finish its own side first (it sends nothing).
const socket = net.connect({ port: Number(port), host, allowHalfOpen: true })
fs.createReadStream(file).pipe(socket)
socket.resume() // nothing comes back; let the peer's end through
socket.on('close', () => {
  const secs = (Date.now() - start) / 1000
  console.log(`sent ${socket.bytesWritten} bytes in ${secs.toFixed(2)} s`)
})
socket.on('error', (err) => { console.error(err.message); process.exitCode = 1 })
