// An echo server over uTP, and a client that checks it:
//   node examples/node/echo_server.js [PORT]   serve until Ctrl-C
//   node examples/node/echo_server.js --self-test
const { net } = require('utp-socket')

const server = net.createServer((socket) => socket.pipe(socket))

if (process.argv.includes('--self-test')) {
  server.listen(0, '127.0.0.1', () => {
    const client = net.connect(server.address().port, '127.0.0.1')
    const chunks = []
    client.on('data', (d) => chunks.push(d))
    client.on('end', () => {
      console.log(Buffer.concat(chunks).toString())
      server.close()
    })
    client.end('hello over uTP from Node')
  })
} else {
  const port = Number(process.argv[2] || 9000)
  server.listen(port, () => console.log(`echoing on port ${server.address().port}`))
}
