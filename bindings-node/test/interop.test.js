'use strict'
// On the wire with utp-native from npm (real libutp inside), both ways.
// Skipped, and reported so, when utp-native is not installed.
const test = require('node:test')
const assert = require('node:assert')
const crypto = require('node:crypto')
const utp = require('utp-socket')

let native = null
try { native = require('utp-native') } catch (_) {}
const opts = { skip: native ? false : 'utp-native is not installed' }
const N = 5 << 20

function collect (socket) {
  return new Promise((resolve, reject) => {
    const chunks = []
    socket.on('data', (d) => chunks.push(d))
    socket.on('end', () => resolve(Buffer.concat(chunks)))
    socket.on('error', reject)
  })
}

test('our client -> utp-native server', { ...opts, timeout: 60000 }, async () => {
  const data = crypto.randomBytes(N)
  let got
  const server = native.createServer((s) => { got = collect(s); s.on('end', () => s.end()) })
  await new Promise((resolve) => server.listen(0, resolve))
  const c = utp.net.connect(server.address().port, '127.0.0.1')
  c.end(data)
  await new Promise((resolve) => c.on('close', resolve).resume())
  assert.ok((await got).equals(data))
  await new Promise((resolve) => server.close(resolve))
})

test('utp-native client -> our server', { ...opts, timeout: 60000 }, async () => {
  const data = crypto.randomBytes(N)
  let got
  const server = utp.net.createServer((s) => { got = collect(s); s.on('end', () => s.end()) })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const c = native.connect(server.address().port, '127.0.0.1')
  c.end(data)
  c.resume()
  await new Promise((resolve) => c.on('close', resolve))
  assert.ok((await got).equals(data))
  await new Promise((resolve) => server.close(resolve))
})
