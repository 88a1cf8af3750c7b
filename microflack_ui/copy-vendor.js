#!/usr/bin/env node
// `npm run build`: copies the front-end libraries the page loads from
// node_modules/ (installed by `npm ci` from package-lock.json) into
// static/vendor/, which is rebuilt from scratch and never committed.
//
// A source map named by a file's `sourceMappingURL` comment is copied along
// with it, so the browser's developer tools find it instead of a 404.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Each file of static/vendor/ and where it comes from (under node_modules/).
// templates/index.html references every one of them.
const FILES = {
  'bootstrap.min.css': 'bootstrap/dist/css/bootstrap.min.css',
  'jquery.min.js': 'jquery/dist/jquery.min.js',
  'underscore-umd-min.js': 'underscore/underscore-umd-min.js',
  'backbone-min.js': 'backbone/backbone-min.js',
  'socket.io.min.js': 'socket.io-client/dist/socket.io.min.js',
};

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, 'node_modules');
const vendor = path.join(here, 'static', 'vendor');

// The last `sourceMappingURL=<file>` comment of a script or stylesheet.
function sourceMapOf(text) {
  const matches = [...text.matchAll(/[#@] sourceMappingURL=([^\s*]+)/g)];
  const name = matches.length ? matches[matches.length - 1][1] : null;
  return name && !name.includes('/') && !name.includes(':') ? name : null;
}

function copy(source, target) {
  fs.copyFileSync(source, target);
  console.log(`  ${path.relative(here, source)} -> ${path.relative(here, target)}`);
}

function main() {
  if (!fs.existsSync(modules)) {
    throw new Error('node_modules/ is missing: run `npm ci` first');
  }
  fs.rmSync(vendor, { recursive: true, force: true });
  fs.mkdirSync(vendor, { recursive: true });
  console.log('Copying front-end libraries into static/vendor/:');
  for (const [name, from] of Object.entries(FILES)) {
    const source = path.join(modules, from);
    if (!fs.existsSync(source)) {
      throw new Error(`${from} is missing from node_modules/: run \`npm ci\``);
    }
    copy(source, path.join(vendor, name));
    const map = sourceMapOf(fs.readFileSync(source, 'utf8'));
    if (map) {
      const mapSource = path.join(path.dirname(source), map);
      if (fs.existsSync(mapSource)) {
        copy(mapSource, path.join(vendor, map));
      }
    }
  }
}

try {
  main();
} catch (error) {
  console.error(`copy-vendor: ${error.message}`);
  process.exit(1);
}
