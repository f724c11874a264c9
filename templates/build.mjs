// Bundles src/ into dist/ (index.html, app.js, style.css): the directory the egress serves on
// template_port. No framework: livekit-client plus a little DOM code keeps the page light,
// which matters because every recording runs it in a software-rendered Chrome.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/index.ts'],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'iife',
  target: ['chrome110'],
  outfile: 'dist/app.js',
  logLevel: 'warning',
});
copyFileSync('src/index.html', 'dist/index.html');
copyFileSync('src/style.css', 'dist/style.css');
console.log('templates: built dist/');
