// Builds the page into ../internal/web/dist (or the folder given as the
// first argument): dist/index.html, dist/assets/app.js and app.css. The
// output is committed and embedded into the pontoon binary (go:embed).
// Not minified, so that a review of the committed bundle can read it.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? join(here, "..", "internal", "web", "dist");

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
await build({
  entryPoints: { app: join(here, "src", "main.ts") },
  bundle: true,
  format: "esm",
  target: "es2022",
  outdir: join(out, "assets"),
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
await build({
  entryPoints: { app: join(here, "src", "style.css") },
  bundle: true,
  outdir: join(out, "assets"),
  charset: "utf8",
  logLevel: "warning",
});
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
