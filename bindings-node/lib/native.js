'use strict'
// Loads the native addon: the prebuilt file shipped in the package (`npm
// pack` builds it), else, in a source checkout, builds it with cargo first
// (`npm run build` does the same ahead of time).
const fs = require('fs')
const { build, FILE } = require('./build-addon')

if (!fs.existsSync(FILE)) build()
module.exports = require(FILE)
