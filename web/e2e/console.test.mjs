// End-to-end test of the web console in a real browser (Debian's chromium
// driven by playwright-core; no browser download) against a real
// inventory-service started here, on ephemeral loopback ports, with a
// throwaway SQLite database and an OTLP sink that receives its spans.
//
//   cd web && npm ci && npm run build && npm run test:e2e      (or e2e/run.sh)
//
// Environment:
//   INVENTORY_BIN         the service binary (default ../target/debug/inventory-service,
//                         relative to web/)
//   CONSOLE_ORIGIN_MODE   service (default): open the console the service serves at GET /;
//                         static: serve web/dist from this test's own server and point the
//                         console at the service with ?api=<origin> (for a binary that does
//                         not serve the console yet)
//   CHROMIUM              the browser (default /usr/bin/chromium)
//
// Everything is bounded: each step has a timeout, the whole file a watchdog,
// and the service, the servers and the browser are stopped in after().

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(WEB, "dist");
const BIN = resolve(WEB, process.env.INVENTORY_BIN ?? "../target/debug/inventory-service");
const MODE = process.env.CONSOLE_ORIGIN_MODE ?? "service";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];

const PRODUCT = "product-e2e";
const INITIAL_STOCK = 10;
const STEP_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 8_000;
const WATCHDOG_MS = 5 * 60_000;
const TRACE_ID = /^[0-9a-f]{32}$/;

assert.ok(MODE === "service" || MODE === "static", `CONSOLE_ORIGIN_MODE must be service or static, not ${MODE}`);

// ---- servers ---------------------------------------------------------------

/** Starts an HTTP server on an ephemeral loopback port. */
function listen(handler) {
  return new Promise((resolvePromise, reject) => {
    const server = http.createServer(handler);
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.unref();
      resolvePromise({ server, origin: `http://127.0.0.1:${server.address().port}` });
    });
  });
}

function closeServer(server) {
  return new Promise((resolvePromise) => {
    if (!server) {
      resolvePromise();
      return;
    }
    server.closeAllConnections?.();
    server.close(() => resolvePromise());
  });
}

const STATIC_FILES = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/index.html": ["index.html", "text/html; charset=utf-8"],
  "/console.js": ["console.js", "text/javascript; charset=utf-8"],
  "/console.css": ["console.css", "text/css; charset=utf-8"],
};

/**
 * The test's own web server, on another origin than the service: web/dist
 * (static mode, and the cross-origin case) and an empty page.
 */
function startStaticServer() {
  return listen(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/blank.html") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end("<!doctype html><html lang=en><title>other origin</title><body></body></html>");
      return;
    }
    const file = STATIC_FILES[path];
    if (req.method !== "GET" || !file) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
    try {
      const body = await readFile(join(DIST, file[0]));
      res.writeHead(200, { "content-type": file[1], "cache-control": "no-store" });
      res.end(body);
    } catch (e) {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(e));
    }
  });
}

/** An OTLP/HTTP sink: keeps the bodies the service exports (protobuf). */
async function startOtlpSink() {
  const bodies = [];
  const { server, origin } = await listen((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      if (req.url?.startsWith("/v1/traces")) {
        bodies.push(Buffer.concat(chunks));
      }
      res.writeHead(200, { "content-type": "application/x-protobuf" });
      res.end();
    });
  });
  return { server, origin, bodies };
}

// ---- the service -------------------------------------------------------------

async function startService(otlpOrigin) {
  const dir = await mkdtemp(join(tmpdir(), "inventory-e2e-"));
  const configPath = join(dir, "config.yaml");
  await writeFile(
    configPath,
    [
      "server:",
      '  name: "inventory-service"',
      '  version: "e2e"',
      '  host: "127.0.0.1"',
      "  http_port: 0",
      "  grpc_port: 0",
      '  shutdown_timeout: "2s"',
      // The page on the test's own web server is another origin.
      '  cors_allowed_origins: ["*"]',
      "database:",
      '  driver: "sqlite"',
      `  dsn: ${JSON.stringify(join(dir, "inventory.db"))}`,
      "tracing:",
      "  enabled: true",
      `  jaeger_endpoint: ${JSON.stringify(otlpOrigin)}`,
      "  protocol: http",
      "  sampling_rate: 1.0",
      '  export_interval: "500ms"',
      "inventory:",
      "  initial_stock:",
      `    ${PRODUCT}: ${INITIAL_STOCK}`,
      "logging:",
      '  level: "info"',
      '  format: "json"',
      "",
    ].join("\n"),
  );
  // The service reads INVENTORY_* and DATABASE_URL: none from outside.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("INVENTORY_") && k !== "DATABASE_URL"),
  );
  const child = spawn(BIN, ["--config", configPath], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  const log = [];
  const exited = new Promise((resolvePromise) => child.once("exit", (code, signal) => resolvePromise({ code, signal })));
  child.once("error", (e) => log.push(`spawn error: ${e.message}`));
  createInterface({ input: child.stderr }).on("line", (line) => log.push(line));
  const lines = createInterface({ input: child.stdout });

  const addresses = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the service did not start within ${START_TIMEOUT_MS} ms:\n${log.join("\n")}`)),
      START_TIMEOUT_MS,
    );
    lines.on("line", (line) => {
      log.push(line);
      try {
        const entry = JSON.parse(line);
        if (entry.message === "inventory-service listening") {
          clearTimeout(timer);
          resolvePromise({ http: entry.http, grpc: entry.grpc });
        }
      } catch {
        // not JSON: kept in the log
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${BIN} exited (${code ?? signal}) before listening:\n${log.join("\n")}`));
    });
  });

  let stopped;
  return {
    dir,
    log,
    httpOrigin: `http://${addresses.http}`,
    grpcOrigin: `http://${addresses.grpc}`,
    /** SIGTERM, then SIGKILL if it has not exited in time. Idempotent. */
    stop() {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
      })();
      return stopped;
    },
  };
}

// ---- page helpers --------------------------------------------------------------

/** Waits until the live region shows a message matching `pattern`; returns it. */
async function outcome(page, pattern) {
  try {
    await page.waitForFunction(
      ([source, flags]) => new RegExp(source, flags).test(document.getElementById("outcome-message")?.textContent ?? ""),
      [pattern.source, pattern.flags],
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch (e) {
    const shown = await page.locator("#outcome-message").textContent();
    throw new Error(`the outcome never matched ${pattern}; it shows: ${JSON.stringify(shown)}`, { cause: e });
  }
  return page.evaluate(() => ({
    kind: document.getElementById("outcome")?.dataset.kind,
    message: document.getElementById("outcome-message")?.textContent ?? "",
    traceShown: !document.getElementById("outcome-trace")?.hidden,
    traceId: document.getElementById("outcome-trace-id")?.textContent ?? "",
  }));
}

/** Waits until the stock panel shows these values. */
async function stock(page, expected) {
  const read = () =>
    page.evaluate(() => ({
      current: document.getElementById("stock-current")?.textContent,
      reserved: document.getElementById("stock-reserved")?.textContent,
      available: document.getElementById("stock-available")?.textContent,
      version: document.getElementById("stock-version")?.textContent,
    }));
  const want = Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, String(v)]));
  try {
    await page.waitForFunction(
      (want) =>
        Object.entries(want).every(([k, v]) => document.getElementById(`stock-${k}`)?.textContent === v),
      want,
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch (e) {
    throw new Error(`the stock panel never showed ${JSON.stringify(want)}: ${JSON.stringify(await read())}`, {
      cause: e,
    });
  }
}

function assertTraceId(result, previous) {
  assert.ok(result.traceShown, `no trace id shown for: ${result.message}`);
  assert.match(result.traceId, TRACE_ID);
  assert.notEqual(result.traceId, "0".repeat(32));
  if (previous) {
    assert.notEqual(result.traceId, previous, "each call has its own trace id");
  }
}

// ---- the tests -----------------------------------------------------------------

describe(`web console (${MODE} mode) against ${BIN}`, { timeout: WATCHDOG_MS }, () => {
  let service;
  let sink;
  let site;
  let browser;
  let page;
  let consoleUrl;
  /** The trace id the console showed for the reservation. */
  let reserveTraceId;
  const watchdog = setTimeout(() => {
    console.error(`e2e: watchdog fired after ${WATCHDOG_MS} ms; stopping`);
    void service?.stop();
    process.exit(1);
  }, WATCHDOG_MS);
  watchdog.unref();

  before(async () => {
    sink = await startOtlpSink();
    site = await startStaticServer();
    service = await startService(sink.origin);
    consoleUrl =
      MODE === "service" ? `${service.httpOrigin}/` : `${site.origin}/?api=${encodeURIComponent(service.httpOrigin)}`;
    if (MODE === "service") {
      const res = await fetch(consoleUrl, { signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
      const body = await res.text();
      assert.ok(
        res.ok && /text\/html/.test(res.headers.get("content-type") ?? "") && body.includes("console.js"),
        `GET / on the service answered ${res.status} ${res.headers.get("content-type")}: it does not serve the ` +
          "console (yet?); run with CONSOLE_ORIGIN_MODE=static",
      );
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      timeout: START_TIMEOUT_MS,
    });
    const context = await browser.newContext({ viewport: { width: 1024, height: 800 } });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
    page = await context.newPage();
    page.on("pageerror", (e) => console.error(`e2e: page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") console.error(`e2e: page console: ${m.text()}`);
    });
  });

  after(async () => {
    clearTimeout(watchdog);
    await browser?.close().catch(() => {});
    await service?.stop();
    await closeServer(site?.server);
    await closeServer(sink?.server);
    if (service?.dir) {
      await rm(service.dir, { recursive: true, force: true });
    }
  });

  it("loads, labels every control and shows focus", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.goto(consoleUrl);
    await page.waitForFunction(() => document.documentElement.dataset.ready === "true");
    assert.equal(await page.title(), "Inventory console");
    const unlabeled = await page.evaluate(() =>
      [...document.querySelectorAll("input, select")].filter((el) => el.labels.length === 0).map((el) => el.id),
    );
    assert.deepEqual(unlabeled, [], "inputs without a label");
    assert.equal(await page.locator("[aria-live]").count(), 1);
    // The first Tab reaches the product id, with a visible focus ring.
    await page.keyboard.press("Tab");
    const focus = await page.evaluate(() => {
      const el = document.activeElement;
      return { id: el?.id, visible: el?.matches(":focus-visible"), outline: getComputedStyle(el).outlineStyle };
    });
    assert.equal(focus.id, "product-id");
    assert.ok(focus.visible && focus.outline !== "none", `focus not visible: ${JSON.stringify(focus)}`);
  });

  it("looks up a product", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.getByLabel("Product id").fill(PRODUCT);
    await page.getByLabel("Product id").press("Enter");
    const result = await outcome(page, /^product-e2e: 10 available/);
    assert.equal(result.kind, "ok");
    assertTraceId(result);
    await stock(page, { current: INITIAL_STOCK, reserved: 0, available: INITIAL_STOCK, version: 1 });
  });

  it("reserves, and reserved and available change", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.getByLabel("Order id").fill("order-e2e-1");
    const reserve = page.getByRole("group", { name: "Reserve" });
    await reserve.getByLabel("Quantity").fill("3");
    await reserve.getByLabel("Timeout (seconds, 0 = default)").fill("600");
    await reserve.getByLabel("Quantity").press("Enter");
    const result = await outcome(page, /^Reserved 3 of product-e2e for order order-e2e-1/);
    assert.equal(result.kind, "ok");
    assertTraceId(result);
    reserveTraceId = result.traceId;
    await stock(page, { current: 10, reserved: 3, available: 7, version: 1 });
  });

  it("names the available quantity when stock is short", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.getByLabel("Order id").fill("order-e2e-2");
    const reserve = page.getByRole("group", { name: "Reserve" });
    await reserve.getByLabel("Quantity").fill("50");
    await reserve.getByRole("button", { name: "Reserve" }).click();
    const result = await outcome(page, /Not enough stock/);
    assert.equal(result.kind, "error");
    assert.match(result.message, /only 7 available, 50 requested/);
    assertTraceId(result, reserveTraceId);
    assert.equal(await reserve.getByLabel("Quantity").getAttribute("aria-invalid"), "true");
    await stock(page, { reserved: 3, available: 7 });
  });

  it("names the field of a validation error", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.getByLabel("Order id").fill("");
    const reserve = page.getByRole("group", { name: "Reserve" });
    await reserve.getByLabel("Quantity").fill("1");
    await reserve.getByLabel("Quantity").press("Enter");
    const result = await outcome(page, /^Order id: /);
    assert.equal(result.kind, "error");
    assertTraceId(result);
    assert.equal(await page.evaluate(() => document.activeElement?.id), "order-id");
    assert.equal(await page.getByLabel("Order id").getAttribute("aria-invalid"), "true");
  });

  it("releases, then restocks and commits", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.getByLabel("Order id").fill("order-e2e-1");
    const release = page.getByRole("group", { name: "Release" });
    await release.getByLabel("Quantity (0 = all held)").fill("0");
    await release.getByLabel("Quantity (0 = all held)").press("Enter");
    let result = await outcome(page, /^Released 3 of product-e2e for order order-e2e-1/);
    assertTraceId(result);
    await stock(page, { current: 10, reserved: 0, available: 10 });

    await page.getByLabel("Operation").selectOption("add");
    await page.locator("#restock-form").getByLabel("Quantity").fill("5");
    await page.getByLabel("Expected version (optional)").fill("1");
    await page.getByRole("button", { name: "Update stock" }).click();
    result = await outcome(page, /^product-e2e: stock on hand 10 → 15 \(\+5\)/);
    assertTraceId(result);
    await stock(page, { current: 15, reserved: 0, available: 15, version: 2 });

    await page.getByLabel("Order id").fill("order-e2e-3");
    const reserve = page.getByRole("group", { name: "Reserve" });
    await reserve.getByLabel("Quantity").fill("2");
    await reserve.getByLabel("Quantity").press("Enter");
    await outcome(page, /^Reserved 2 of product-e2e for order order-e2e-3/);
    await stock(page, { reserved: 2, available: 13 });
    const commit = page.getByRole("group", { name: "Commit" });
    await commit.getByLabel("Quantity (0 = all held)").fill("0");
    await commit.getByRole("button", { name: "Commit" }).click();
    result = await outcome(page, /^Committed 2 of product-e2e for order order-e2e-3/);
    assertTraceId(result);
    await stock(page, { current: 13, reserved: 0, available: 13, version: 3 });
  });

  it("lists an order's reservations", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.getByLabel("Order id").fill("order-e2e-1");
    await page.getByRole("button", { name: "List reservations" }).click();
    const result = await outcome(page, /^Order order-e2e-1 has 1 reservation\./);
    assertTraceId(result);
    const rows = await page.locator("#reservations-body tr").allTextContents();
    assert.equal(rows.length, 1);
    assert.match(rows[0], /product-e2e.*released/);
  });

  it("pages through the history", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.getByLabel("Page size").fill("2");
    await page.getByLabel("Page size").press("Enter");
    let result = await outcome(page, /^History of product-e2e, page 1: 2 entries; more on the next page/);
    assertTraceId(result);
    const operations = [];
    const rows = () =>
      page.locator("#history-body tr").evaluateAll((trs) => trs.map((tr) => tr.cells[1].textContent));
    operations.push(...(await rows()));
    const next = page.getByRole("button", { name: "Next page" });
    for (let pageNumber = 2; pageNumber <= 10 && (await next.isEnabled()); pageNumber += 1) {
      await next.focus();
      await page.keyboard.press("Enter");
      result = await outcome(page, new RegExp(`^History of product-e2e, page ${pageNumber}: `));
      assertTraceId(result);
      operations.push(...(await rows()));
    }
    assert.equal(await next.isDisabled(), true, "the last page disables Next page");
    // Newest first: commit, reserve, update (+5), release, reserve, the initial stock.
    assert.deepEqual(operations, ["commit", "reserve", "update", "release", "reserve", "update"]);
  });

  it("logs every call with its trace id, and the service exports that trace", { timeout: TEST_TIMEOUT_MS }, async () => {
    const calls = await page.locator("#calls li").allTextContents();
    assert.ok(calls.length >= 10, `only ${calls.length} calls logged`);
    for (const call of calls) {
      assert.match(call, /trace [0-9a-f]{32}$/, call);
    }
    assert.ok(calls.some((c) => c.includes("ReserveInventory: FailedPrecondition")));
    const wanted = Buffer.from(reserveTraceId, "hex");
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (!sink.bodies.some((b) => b.includes(wanted)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(
      sink.bodies.some((b) => b.includes(wanted)),
      `trace ${reserveTraceId} never reached the OTLP sink (${sink.bodies.length} exports)`,
    );
  });

  it("fits a narrow window", { timeout: TEST_TIMEOUT_MS }, async () => {
    await page.setViewportSize({ width: 360, height: 740 });
    const widths = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
    }));
    assert.ok(widths.scroll <= widths.client, `horizontal overflow at 360px: ${JSON.stringify(widths)}`);
    await page.setViewportSize({ width: 1024, height: 800 });
  });

  it("lets another origin call gRPC-Web and read x-trace-id (CORS)", { timeout: TEST_TIMEOUT_MS }, async () => {
    const other = await page.context().newPage();
    try {
      await other.goto(`${site.origin}/blank.html`);
      const seen = await other.evaluate(
        async ([api, productId]) => {
          const id = new TextEncoder().encode(productId);
          const message = new Uint8Array([0x0a, id.length, ...id]); // CheckInventoryRequest.product_id
          const frame = new Uint8Array(5 + message.length);
          new DataView(frame.buffer).setUint32(1, message.length);
          frame.set(message, 5);
          const res = await fetch(`${api}/inventory.v1.InventoryService/CheckInventory`, {
            method: "POST",
            headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", accept: "application/grpc-web+proto" },
            body: frame,
          });
          const body = new Uint8Array(await res.arrayBuffer());
          const trailers = [];
          for (let at = 0; at + 5 <= body.length; ) {
            const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
            if (body[at] & 0x80) trailers.push(new TextDecoder().decode(body.subarray(at + 5, at + 5 + length)));
            at += 5 + length;
          }
          return {
            origin: location.origin,
            status: res.status,
            traceId: res.headers.get("x-trace-id"),
            trailers: trailers.join(""),
          };
        },
        [service.httpOrigin, PRODUCT],
      );
      assert.notEqual(seen.origin, service.httpOrigin, "the page must be on another origin");
      assert.equal(seen.status, 200);
      assert.match(seen.trailers, /grpc-status:\s*0/);
      assert.match(seen.traceId ?? "", TRACE_ID, "x-trace-id must be readable cross-origin");

      // The console itself, served from the other origin, through ?api=.
      await other.goto(`${site.origin}/?api=${encodeURIComponent(service.httpOrigin)}&product=${PRODUCT}`);
      await other.getByLabel("Product id").press("Enter");
      const result = await outcome(other, /^product-e2e: 13 available/);
      assertTraceId(result);
    } finally {
      await other.close();
    }
  });

  it("works from Node.js through the same generated client", { timeout: TEST_TIMEOUT_MS }, async () => {
    // Bundled here, so the committed output stays the console alone.
    const bundled = await build({
      entryPoints: [join(WEB, "e2e", "node-client.ts")],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      write: false,
      logLevel: "silent",
    });
    const dir = await mkdtemp(join(tmpdir(), "inventory-node-client-"));
    try {
      const file = join(dir, "node-client.mjs");
      await writeFile(file, bundled.outputFiles[0].contents);
      const { run } = await import(pathToFileURL(file).href);
      const result = await run(service.httpOrigin, PRODUCT);
      assert.ok(result.current > 0, `stock on hand ${result.current}`);
      assert.equal(result.refusal, "INSUFFICIENT_STOCK");
      assert.match(result.available, /^\d+$/);
      // A server stream (WatchInventory) over gRPC-Web, followed by the
      // same generated client.
      assert.equal(result.watched, "RESERVE");
      assert.equal(result.watchedAvailable, Number(result.available) - 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("says when the service cannot be reached", { timeout: TEST_TIMEOUT_MS }, async () => {
    await service.stop();
    await page.getByLabel("Product id").fill(PRODUCT);
    await page.getByLabel("Product id").press("Enter");
    const result = await outcome(page, /cannot be reached/);
    assert.equal(result.kind, "error");
    assert.equal(result.traceShown, false, "no trace id without an answer");
  });
});
