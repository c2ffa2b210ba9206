'use strict'
// utp-native's face: one port that listens, connects and carries plain
// UDP datagrams; its error messages.
const test = require('node:test')
const assert = require('node:assert')
const dgram = require('node:dgram')
const utp = require('utp-socket')

test('utp() socket: datagrams and uTP on the same port', async () => {
  const sock = utp()
  await new Promise((resolve) => sock.listen(0, resolve))
  const port = sock.address().port
  const other = dgram.createSocket('udp4')
  await new Promise((resolve) => other.bind(0, '127.0.0.1', resolve))
  const got = new Promise((resolve) => sock.once('message', (buf, rinfo) => resolve([buf.toString(), rinfo.port])))
  other.send('plain udp', port, '127.0.0.1')
  const [msg, from] = await got
  assert.strictEqual(msg, 'plain udp')
  assert.strictEqual(from, other.address().port)
  const conn = new Promise((resolve) => sock.once('connection', (c) => { c.pipe(c); resolve(c) }))
  const client = sock.connect(port)
  client.write('over utp')
  const echoed = await new Promise((resolve) => client.once('data', resolve))
  assert.strictEqual(echoed.toString(), 'over utp')
  await conn
  client.destroy()
  other.close()
  await new Promise((resolve) => sock.close(resolve))
})

test('firewall and maxConnections', async () => {
  const server = utp.createServer()
  server.maxConnections = 1
  server.on('connection', (c) => c.pipe(c))
  await new Promise((resolve) => server.listen(0, resolve))
  const a = utp.connect(server.address().port)
  a.write('a')
  await new Promise((resolve) => a.once('data', resolve))
  assert.strictEqual(server.connections.length, 1)
  a.destroy()
  await new Promise((resolve) => server.close(resolve))
})
