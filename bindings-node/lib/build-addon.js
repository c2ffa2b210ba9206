'use strict'
// Builds the native addon with cargo (a Rust toolchain is needed) and puts
// it where the package loads it from: utp_node.<platform>-<arch>.node.
const path = require('path')
const fs = require('fs')
const { execFileSync } = require('child_process')

const ROOT = path.join(__dirname, '..')
const NAME = `utp_node.${process.platform}-${process.arch}.node`
const FILE = path.join(ROOT, NAME)

function build () {
  const manifest = path.join(ROOT, 'Cargo.toml')
  if (!fs.existsSync(manifest)) {
    throw new Error(`${NAME} is missing and there is no source to build it from`)
  }
  execFileSync('cargo', ['build', '--release', '--quiet', '--manifest-path', manifest], {
    stdio: ['ignore', 'inherit', 'inherit']
  })
  const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest], { encoding: 'utf8', maxBuffer: 64 << 20 }))
  const lib = path.join(meta.target_directory, 'release', 'libutp_node.so')
  fs.copyFileSync(lib, FILE + '.tmp')
  fs.renameSync(FILE + '.tmp', FILE)
  return FILE
}

module.exports = { build, FILE, NAME }
