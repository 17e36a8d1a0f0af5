// The live service graph as a user sees it: `ambit-demo --serve` (a mesh with light traffic:
// a 90/10 canary through the waypoint, a client that policy denies), its page opened in
// Debian's headless Chromium through Playwright. Twice: the demo's own graph (scraping the
// proxies' /metrics), and `ambitctl graph` reading the same series through a real Prometheus
// that scrapes the proxies. Screenshots are kept in artifacts/.
//
// Environment: AMBIT_BIN (the directory with ambit-demo and ambitctl; default
// ../../target/debug), CHROMIUM (default /usr/bin/chromium), PROMETHEUS (default prometheus).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const bin = resolve(process.env.AMBIT_BIN || join(here, "../../target/debug"));
const artifacts = join(here, "artifacts");
const STEP_MS = 120_000;
const children = [];
const scratch = [];

/** Kills every child started so far and waits until each has exited. */
async function stopAll() {
  await Promise.all(children.splice(0).map(c => new Promise(done => {
    if (c.exitCode !== null || c.signalCode !== null) return done();
    c.once("exit", done);
    c.kill("SIGKILL");
  })));
}

after(async () => {
  await stopAll();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

/** Starts `cmd` and resolves with the first stdout line matching `pattern` (and the child). */
function start(cmd, args, pattern) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "", err = "";
  return new Promise((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} printed no ${pattern} in time:\n${out}\n${err}`)), STEP_MS);
    child.stderr.on("data", d => { err += d; });
    child.stdout.on("data", d => {
      out += d;
      const m = out.match(pattern);
      if (m) { clearTimeout(timer); resolveLine({ match: m, child, output: () => out }); }
    });
    child.on("exit", code => { clearTimeout(timer); reject(new Error(`${cmd} exited ${code}:\n${out}\n${err}`)); });
  });
}

/** Polls `probe` until it returns something truthy. */
async function until(what, probe, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise(r => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", fail);
  });
}

async function startDemo() {
  const demo = await start(join(bin, "ambit-demo"), ["--serve", "--graph", "127.0.0.1:0"],
    /service graph \(live, with light traffic\): (http:\/\/\S+)/);
  const metrics = [...demo.output().matchAll(/metrics (http:\/\/\S+\/metrics)/g)].map(m => m[1]);
  assert.equal(metrics.length, 3, `three proxies' metrics in:\n${demo.output()}`);
  return { url: demo.match[1], metrics };
}

/** Opens `url`, waits for rates over at least 15 s, checks the drawing, keeps a screenshot. */
async function checkPage(url, name) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    const failures = [];
    page.on("pageerror", e => failures.push(String(e)));
    page.on("requestfailed", r => failures.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on("request", r => {
      if (!r.url().startsWith(url)) failures.push(`the page fetched ${r.url()}: it must work offline`);
    });
    await page.goto(url);
    await page.waitForFunction(() => {
      const m = document.getElementById("status").textContent.match(/rates over (\d+) s/);
      return m && Number(m[1]) >= 15 &&
        document.querySelector('.edge[data-source="shop/frontend"][data-target="shop/reviews-v2"]');
    }, null, { timeout: STEP_MS, polling: 500 });
    const drawn = await page.evaluate(() => ({
      nodes: [...document.querySelectorAll(".node")].map(n => n.dataset.id),
      versions: Object.fromEntries([...document.querySelectorAll(".node")].map(n => [n.dataset.id, n.dataset.version])),
      edges: [...document.querySelectorAll(".edge")].map(e => ({
        source: e.dataset.source, target: e.dataset.target, share: Number(e.dataset.share),
        state: e.dataset.state, label: e.querySelector("text").textContent,
      })),
      rows: document.querySelectorAll("#edges tbody tr").length,
    }));
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, `graph-${name}.png`), fullPage: true });
    const dump = JSON.stringify(drawn, null, 1);
    for (const id of ["shop/frontend", "shop/reviews-v1", "shop/reviews-v2", "shop/cart", "shop/batch"]) {
      assert.ok(drawn.nodes.includes(id), `node ${id} drawn: ${dump}`);
    }
    assert.equal(drawn.versions["shop/reviews-v1"], "v1");
    assert.equal(drawn.versions["shop/reviews-v2"], "v2");
    assert.ok(drawn.edges.length > 0 && drawn.rows === drawn.edges.length, dump);
    const edge = (s, t) => drawn.edges.find(e => e.source === s && e.target === t);
    const v1 = edge("shop/frontend", "shop/reviews-v1"), v2 = edge("shop/frontend", "shop/reviews-v2");
    assert.ok(v1 && v2, `the canary's two edges: ${dump}`);
    // 90/10 over at least 150 requests (10/s for 15 s): the bounds are 3.7 to 6 standard
    // deviations away (v2 at 1% or less has a chance of about 1 in 400,000).
    assert.ok(v1.share > 0.75 && v1.share < 0.99, `v1 share ${v1.share}: ${dump}`);
    assert.ok(v2.share > 0.01 && v2.share < 0.25, `v2 share ${v2.share}: ${dump}`);
    assert.ok(Math.abs(v1.share + v2.share - 1) < 1e-9, dump);
    assert.match(v1.label, /%/, "the share is on the edge's label");
    assert.match(v1.label, /mTLS/);
    const denied = edge("shop/batch", "shop/cart");
    assert.ok(denied && denied.state === "denied", `batch -> cart drawn as denied: ${dump}`);
    assert.equal(edge("shop/frontend", "shop/cart")?.state, "ok", dump);
    assert.deepEqual(failures, []);
  } finally {
    await browser.close();
  }
}

test("the demo's graph, from the proxies' /metrics", { timeout: 4 * STEP_MS }, async () => {
  const demo = await startDemo();
  await checkPage(demo.url, "metrics");
  await stopAll();
});

test("ambitctl graph through a real Prometheus scraping the proxies", { timeout: 5 * STEP_MS }, async () => {
  const demo = await startDemo();
  const dir = mkdtempSync(join(tmpdir(), "ambit-prometheus-"));
  scratch.push(dir);
  const targets = demo.metrics.map(u => new URL(u).host);
  writeFileSync(join(dir, "prometheus.yml"),
    `global: {scrape_interval: 1s, evaluation_interval: 1s}\n` +
    `scrape_configs:\n- job_name: ambit\n  metrics_path: /metrics\n  static_configs: [{targets: ${JSON.stringify(targets)}}]\n`);
  const port = await freePort();
  const prom = `http://127.0.0.1:${port}`;
  const child = spawn(process.env.PROMETHEUS || "prometheus", [
    `--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"], { stdio: "ignore" });
  children.push(child);
  const api = async path => (await fetch(prom + path)).json();
  // Every proxy is scraped without a parse error.
  const up = await until("every target scraped cleanly", async () => {
    const t = (await api("/api/v1/targets")).data.activeTargets;
    return t.length === 3 && t.every(x => x.health === "up" && x.lastError === "") && t;
  });
  assert.equal(up.length, 3);
  // The queries Istio's dashboards are built on return series.
  for (const q of [
    'sum(rate(istio_requests_total{reporter="waypoint"}[30s])) by (source_workload, destination_workload, destination_canonical_revision)',
    'histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="waypoint"}[30s])) by (le, destination_workload))',
    'sum(istio_tcp_connections_opened_total{reporter="destination"}) by (source_workload, destination_workload, response_flags)',
    'sum(rate(istio_tcp_sent_bytes_total[30s])) by (destination_workload)',
  ]) {
    const series = await until(`series for ${q}`, async () => {
      const r = await api("/api/v1/query?query=" + encodeURIComponent(q));
      return r.status === "success" && r.data.result.length > 0 && r.data.result;
    });
    assert.ok(series.length > 0, q);
  }
  const graph = await start(join(bin, "ambitctl"), ["graph", "--prometheus", prom,
    "--listen", "127.0.0.1:0", "--interval", "1s", "--window", "20s"], /service graph: (http:\/\/\S+)/);
  await checkPage(graph.match[1], "prometheus");
});
