#!/usr/bin/env node
console.log("shim ok", process.argv.slice(2))
