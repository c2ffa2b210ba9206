'use strict'
// `npm run build` / prepack: (re)builds the native addon with cargo.
const { build, NAME } = require('../lib/build-addon')
build()
console.log(`built ${NAME}`)
