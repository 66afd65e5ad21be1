// Starts a real `orrery up` (its own private PostgreSQL in a fresh data directory, on a free port)
// and drives Debian's Chromium against it with playwright-core. No browser download, no mocks.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ORRERY = process.env.ORRERY_BIN ?? join(ROOT, 'target/debug/orrery');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const ADMIN_EMAIL = 'admin@orrery.local';
export const ADMIN_PASSWORD = 'e2e-admin-password';
export const ARTIFACTS = join(ROOT, 'target/e2e');

async function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); });
    s.on('error', fail);
  });
}

/** A running `orrery up`. `stop()` sends SIGTERM and waits for a clean exit. */
export async function startOrrery() {
  const dataDir = mkdtempSync(join(tmpdir(), 'orrery-e2e-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(ORRERY, ['up', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--log-format', 'text'], {
    cwd: ROOT,
    env: { ...process.env, ORRERY_ADMIN_PASSWORD: ADMIN_PASSWORD, RUST_LOG: 'warn,server=info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((ok) => child.on('exit', (code, signal) => ok({ code, signal })));
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`orrery up exited early:\n${output}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`orrery up not ready in 120 s:\n${output}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  return {
    base, dataDir, token,
    output: () => output,
    async api(method, path, { body, bearer = token } = {}) {
      const r = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : null };
    },
    async stop() {
      child.kill('SIGTERM');
      const { code } = await exited;
      const leftovers = postgresProcessesOf(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
      return { code, leftovers };
    },
  };
}

/** PIDs of postgres processes whose data directory lies under `dir`. */
export function postgresProcessesOf(dir) {
  try {
    return execFileSync('pgrep', ['-f', `postgres -D ${dir}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** A fresh browser profile. Every page it opens fails the test on a JS error or an unexpected 4xx/5xx. */
export async function openBrowser(t) {
  const profile = mkdtempSync(join(tmpdir(), 'orrery-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  const allowed = new Set();
  context.on('page', (page) => watch(page, problems, allowed));
  for (const page of context.pages()) watch(page, problems, allowed);
  const page = context.pages()[0] ?? await context.newPage();
  return {
    context, page, problems,
    /** Lets responses with this status through for the rest of the test (an expected 401, 403...). */
    allowStatus(status) { allowed.add(status); },
    async close(testContext) {
      if (problems.length || testContext?.failed) {
        mkdirSync(ARTIFACTS, { recursive: true });
        const name = (t?.name ?? 'page').replace(/[^a-z0-9]+/gi, '-');
        await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true }).catch(() => {});
      }
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

function watch(page, problems, allowed) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console error: ${m.text()}`); });
  page.on('response', (r) => {
    if (r.status() >= 400 && !allowed.has(r.status())) problems.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
}

/** Waits until the wasm console has hydrated the page. */
export async function hydrated(page) {
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 30_000 });
}

export async function signIn(page, base, email, password) {
  await page.goto(`${base}/login`);
  await hydrated(page);
  await page.fill('[data-test=email]', email);
  await page.fill('[data-test=password]', password);
  await page.click('[data-test=sign-in]');
}
