// Receive one file over uTP: node examples/node/receive_file.js PORT OUT [PORTFILE]
// Listens on PORT (0 picks one; PORTFILE gets the number), takes one
// connection and writes what arrives to OUT.
const fs = require('fs')
const { net } = require('utp-socket')

const [port, out, portFile] = process.argv.slice(2)
const server = net.createServer((socket) => {
  server.close() // one file
  socket.pipe(fs.createWriteStream(out)).on('finish', () => {
    console.log(`received ${socket.bytesRead} bytes from ${socket.remoteAddress}:${socket.remotePort}`)
  })
})
server.listen(Number(port), '127.0.0.1', () => {
  const p = server.address().port
  if (portFile) fs.writeFileSync(portFile, String(p))
  console.log(`listening on port ${p}`)
})
