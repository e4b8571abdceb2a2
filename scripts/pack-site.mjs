// Gives the built script, module and stylesheet content-hashed names, writes
// site.json naming them, and puts a brotli and a gzip copy beside every
// compressible file, for the server to send as they are.
//
//   node scripts/pack-site.mjs SITE PKG_DIR OUTPUT_NAME best|fast
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const [site, pkgDir, outputName, effort] = process.argv.slice(2);
if (!site || !pkgDir || !outputName || !["best", "fast"].includes(effort)) {
  console.error("usage: node scripts/pack-site.mjs SITE PKG_DIR OUTPUT_NAME best|fast");
  process.exit(2);
}
const pkg = join(site, pkgDir);

// One hash over the three files: the script and the module belong together.
const built = { js: `${outputName}.js`, wasm: `${outputName}_bg.wasm`, css: `${outputName}.css` };
const hash = createHash("sha256");
for (const name of Object.values(built)) hash.update(readFileSync(join(pkg, name)));
const hashedName = `${outputName}.${hash.digest("hex").slice(0, 16)}`;
renameSync(join(pkg, built.js), join(pkg, `${hashedName}.js`));
renameSync(join(pkg, built.wasm), join(pkg, `${hashedName}_bg.wasm`));
renameSync(join(pkg, built.css), join(pkg, `${hashedName}.css`));
writeFileSync(join(site, "site.json"), JSON.stringify({ output_name: hashedName }) + "\n");

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
