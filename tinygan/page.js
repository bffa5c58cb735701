// The TinyGAN student in the browser (built by tinygan/page.py into the export's page/ folder).
// z: row `seed` of z.bin (numpy's draw_z(seed, 1.0), written by the export) scaled as Python does, in float32:
// "biggan" z = float32(truncation) * row, "stylegan" z = row. The interpolation strip is
// `tinygan generate --interpolate seeds:A,B` exactly: t = float32 linspace(0, 1, 8), z = (1 - t) * zA + t * zB.
// Pixels: tinygan.teacher.quantize, floor((x + 1) * 127.5 + 0.5) in float32, clipped to [0, 255].
// Test hook: window.tinygan (ready: a promise of the first result; generate(): the controls' images again;
// run(z, ys): the raw output for a given z).
"use strict";
(() => {
  const STEPS = 8;
  const f32 = Math.fround;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  let cfg, table, session, resolveReady, rejectReady;
  const api = window.tinygan = {
    ready: new Promise((res, rej) => { resolveReady = res; rejectReady = rej; }),
    last: null, run: null, zFor: null, generate: null,
  };

  function zFor(seed, truncation) {
    const d = cfg.z_dim, row = table.subarray(seed * d, (seed + 1) * d);
    if (cfg.latent !== "biggan") return Float32Array.from(row);
    const t = f32(truncation), z = new Float32Array(d);
    for (let i = 0; i < d; i++) z[i] = f32(t * row[i]);
    return z;
  }

  function interpolate(za, zb, steps) {
    const d = za.length, z = new Float32Array(steps * d), step = 1 / (steps - 1);
    for (let j = 0; j < steps; j++) {
      const t = j === steps - 1 ? 1 : f32(j * step), u = f32(1 - t);
      for (let i = 0; i < d; i++) z[j * d + i] = f32(f32(u * za[i]) + f32(t * zb[i]));
    }
    return z;
  }

  async function run(z, ys) {  // z: Float32Array [n * z_dim], ys: class indices -> Float32Array NCHW
    const n = ys.length;
    const feeds = {
      z: new ort.Tensor("float32", z, [n, cfg.z_dim]),
      y: new ort.Tensor("int64", BigInt64Array.from(ys.map((c) => BigInt(c))), [n]),
    };
    const t0 = performance.now();
    const out = await session.run(feeds);
    return { image: out.image.data, ms: performance.now() - t0 };
  }

  function quantize(x) {
    let v = Math.floor(f32(f32(f32(x + 1) * 127.5) + 0.5));
    if (!(v > 0)) v = 0;  // also NaN, as numpy's fmax
    return Math.min(v, 255);
  }

  function draw(canvas, image, n) {  // n images NCHW in [-1, 1] side by side
    const r = cfg.resolution, plane = r * r;
    canvas.width = n * r; canvas.height = r;
    const ctx = canvas.getContext("2d"), px = ctx.createImageData(n * r, r);
    for (let k = 0; k < n; k++) {
      for (let p = 0; p < plane; p++) {
        const o = 4 * ((p / r | 0) * n * r + k * r + (p % r)), base = k * 3 * plane + p;
        px.data[o] = quantize(image[base]);
        px.data[o + 1] = quantize(image[base + plane]);
        px.data[o + 2] = quantize(image[base + 2 * plane]);
        px.data[o + 3] = 255;
      }
    }
    ctx.putImageData(px, 0, 0);
    return px.data;
  }

  function b64(typed) {
    const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  function readSeed(id) {
    const s = Number($(id).value);
    if (!Number.isInteger(s) || s < 0 || s >= cfg.z_seeds) {
      throw new Error(`seed must be an integer 0-${cfg.z_seeds - 1} (the export's noise table)`);
    }
    return s;
  }

  async function generate() {
    const seed = readSeed("seed"), seed2 = readSeed("seed2");
    const truncation = Number($("truncation").value), cls = cfg.conditional ? Number($("class").value) : 0;
    showTruncation();
    const z = zFor(seed, truncation);
    const one = await run(z, [cls]);
    const mainPixels = draw($("main"), one.image, 1);
    const zs = interpolate(z, zFor(seed2, truncation), STEPS);
    const strip = await run(zs, new Array(STEPS).fill(cls));
    const stripPixels = draw($("strip"), strip.image, STEPS);
    $("status").textContent = `Generated 1 image in ${one.ms.toFixed(1)} ms and the strip of ${STEPS} in ` +
      `${strip.ms.toFixed(1)} ms (${(strip.ms / STEPS).toFixed(1)} ms per image), on this machine.`;
    api.last = { cls, seed, seed2, truncation, z: b64(z), image: b64(one.image), pixels: b64(mainPixels),
                 stripPixels: b64(stripPixels), ms: one.ms, stripMs: strip.ms };
    return api.last;
  }

  function facts(loadMs) {
    const mb = (cfg.model_bytes / 1e6).toFixed(2);
    const rows = [["model", `generator.onnx, ${mb} MB (${cfg.model_bytes.toLocaleString("en")} bytes)`],
      ["output", `${cfg.resolution}×${cfg.resolution} RGB`],
      ["classes", cfg.conditional ? `${cfg.classes.length} trained` : "unconditional"],
      ["runtime", `onnxruntime-web ${cfg.onnxruntime_web}, WebAssembly, 1 thread`],
      ["model load", `${loadMs.toFixed(0)} ms`]];
    $("facts").replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const text of [k, v]) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
      return tr;
    }));
    $("recipe").textContent = cfg.latent === "biggan"
      ? `z for seed s is float32(truncation) × row s of z.bin (a truncated normal drawn by the export with ` +
        `numpy), the same z as \`tinygan generate --interpolate seeds:s,…\`; seeds 0-${cfg.z_seeds - 1}.`
      : `z for seed s is row s of z.bin (standard normal; the teacher applied its truncation ψ ` +
        `internally, so the slider has no effect); seeds 0-${cfg.z_seeds - 1}.`;
  }

  function showTruncation() {
    $("truncation-value").textContent = Number($("truncation").value).toFixed(2);
  }

  function setup() {
    const sel = $("class");
    for (const c of cfg.classes) {
      const o = document.createElement("option");
      o.value = c.index; o.textContent = c.name ? `${c.name} (${c.index})` : `class ${c.index}`;
      sel.append(o);
    }
    if (!cfg.conditional) $("class-label").hidden = true;
    if (cfg.latent !== "biggan") $("truncation").disabled = true;
    $("truncation").value = params.get("truncation") ?? cfg.truncation;
    if (params.has("class")) sel.value = params.get("class");
    if (params.has("seed")) $("seed").value = params.get("seed");
    if (params.has("seed2")) $("seed2").value = params.get("seed2");
    $("truncation").addEventListener("input", showTruncation);
    showTruncation();
    $("generate").addEventListener("click", () => generate().catch(fail));
  }

  function fail(e) {
    $("status").textContent = `Error: ${e.message || e}`;
    $("status").className = "error";
  }

  async function main() {
    cfg = await (await fetch("page.json")).json();
    table = new Float32Array(await (await fetch(cfg.z_file)).arrayBuffer());
    setup();
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
    const t0 = performance.now();
    const model = await (await fetch(cfg.model)).arrayBuffer();
    session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
    facts(performance.now() - t0);
    api.run = run; api.zFor = zFor; api.generate = generate;
    $("generate").disabled = false;
    $("status").className = "";
    return generate();
  }

  main().then(resolveReady, (e) => { fail(e); rejectReady(e); });
})();
