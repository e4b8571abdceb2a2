// Moves the built files of SITE/PKG_DIR (script, module, stylesheet, the
// lazily loaded chunks, their loader and manifest) into SITE/PKG_DIR/<hash>/,
// one hash over all of their names and contents, writes site.json naming that
// folder, and puts a brotli and a gzip copy beside every compressible file,
// for the server to send as they are. Inside the folder the files keep the
// names they refer to each other by, so nothing needs rewriting.
//
//   node scripts/pack-site.mjs SITE PKG_DIR best|fast
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const [site, pkgDir, effort] = process.argv.slice(2);
if (!site || !pkgDir || !["best", "fast"].includes(effort)) {
  console.error("usage: node scripts/pack-site.mjs SITE PKG_DIR best|fast");
  process.exit(2);
}
const pkg = join(site, pkgDir);

const built = readdirSync(pkg).filter((name) => statSync(join(pkg, name)).isFile()).sort();
const hash = createHash("sha256");
for (const name of built) hash.update(`${name}\0`).update(readFileSync(join(pkg, name)));
const hashedDir = hash.digest("hex").slice(0, 16);
mkdirSync(join(pkg, hashedDir));
for (const name of built) renameSync(join(pkg, name), join(pkg, hashedDir, name));
writeFileSync(join(site, "site.json"), JSON.stringify({ pkg_dir: `${pkgDir}/${hashedDir}` }) + "\n");

const compressible = /\.(js|mjs|wasm|css|html|json|svg|txt|map)$/;
const best = effort === "best";
const sizes = [];
for (const file of walk(site)) {
  if (!compressible.test(file) || file.endsWith("site.json")) continue;
  const raw = readFileSync(file);
  if (raw.length < 1024) continue;
  const br = brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: best ? 11 : 5,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });
  const gz = gzipSync(raw, { level: best ? 9 : 6 });
  // A copy no smaller than the file is not worth a request header.
  if (br.length < raw.length) writeFileSync(`${file}.br`, br);
  if (gz.length < raw.length) writeFileSync(`${file}.gz`, gz);
  sizes.push([file.slice(site.length + 1), raw.length, gz.length, br.length]);
}
for (const [name, raw, gz, br] of sizes) {
  console.log(`${name}: ${kb(raw)} raw, ${kb(gz)} gzip, ${kb(br)} brotli`);
}

function* walk(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

function kb(bytes) {
  return `${(bytes / 1024).toFixed(1)} KB`;
}
