'use strict'
// Install step: nothing to do when the packaged addon loads; in a source
// checkout without one, builds it with cargo. (npm may skip this script for
// dependencies; the package then builds on first require instead.)
const fs = require('fs')
const { FILE, build } = require('../lib/build-addon')
if (!fs.existsSync(FILE)) build()
