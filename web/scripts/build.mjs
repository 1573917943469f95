// Bundles the console into dist/: index.html (copied), console.js and
// console.css. The output is committed and embedded in the service binary,
// so it must be byte-for-byte reproducible: pinned esbuild, a fixed target,
// no source maps, no legal comments, no timestamps, paths relative to web/.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(web, "dist");

const common = {
  absWorkingDir: web,
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "ascii",
  logLevel: "warning",
  target: ["es2022", "chrome100", "firefox100", "safari15"],
};

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  ...common,
  entryPoints: ["src/main.ts"],
  outfile: "dist/console.js",
  format: "iife",
  platform: "browser",
});
await build({
  ...common,
  entryPoints: ["src/console.css"],
  outfile: "dist/console.css",
});
await copyFile(join(web, "index.html"), join(dist, "index.html"));
