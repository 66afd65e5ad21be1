// A benchmark, not a test: how the editor copes with a workflow of 1,000 tasks (50 layers of 20,
// each task depending on two of the layer before). Opens it in Chromium against a real
// `orrery up`, then measures the open, a re-layout, panning and zooming, dragging a task, and
// finding one. Prints one JSON line; docs/BENCHMARKS.md keeps the figures.
//
//   make build && cd e2e && node bench/editor-1000.mjs
import { startOrrery, openBrowser, hydrated, signIn, ADMIN_EMAIL, ADMIN_PASSWORD } from '../harness.mjs';

const LAYERS = 50;
const WIDE = 20;
const REPEAT = Number(process.env.REPEAT ?? 3);

function document1000() {
  const lines = ['name: big', 'tasks:'];
  for (let l = 0; l < LAYERS; l++) {
    for (let i = 0; i < WIDE; i++) {
      const deps = l === 0 ? '' : `, depends_on: [t${l - 1}_${i}, t${l - 1}_${(i * 7 + 3) % WIDE}]`;
      lines.push(`  - {id: t${l}_${i}, kind: noop${deps}}`);
    }
  }
  return lines.join('\n') + '\n';
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const round = (x) => Math.round(x * 10) / 10;

/** Frame durations (ms) while `act` runs in the page's own event loop. */
async function frames(page, act) {
  await page.evaluate(() => {
    window.__frames = [];
    let last = performance.now();
    const tick = (t) => { window.__frames.push(t - last); last = t; if (window.__recording) requestAnimationFrame(tick); };
    window.__recording = true;
    requestAnimationFrame(tick);
  });
  await act();
  return page.evaluate(() => { window.__recording = false; return window.__frames.slice(1); });
}

const orrery = await startOrrery();
const results = { tasks: LAYERS * WIDE, open_ms: [], arrange_ms: [], pan_zoom_frame_ms: {}, drag_frame_ms: {}, find_ms: [] };
try {
  const p = await orrery.api('POST', '/api/v1/tenants/default/projects', { body: { slug: 'bench', name: 'Bench' } });
  if (p.status !== 201) throw new Error(JSON.stringify(p.body));
  const a = await orrery.api('POST', '/api/v1/tenants/default/workflows', { body: { project: 'bench', document: document1000() } });
  if (a.status !== 201) throw new Error(JSON.stringify(a.body));
  const url = `${orrery.base}/t/default/workflows/${a.body.workflow.id}`;
  const b = await openBrowser();
  await b.page.setViewportSize({ width: 1600, height: 1000 });
  await signIn(b.page, orrery.base, ADMIN_EMAIL, ADMIN_PASSWORD);
  await b.page.waitForURL(`${orrery.base}/t/default`);
  const page = b.page;
  const pans = [];
  const drags = [];
  for (let r = 0; r < REPEAT; r++) {
    const t0 = Date.now();
    await page.goto(url);
    await hydrated(page);
    await page.waitForFunction((n) => document.querySelectorAll('.node').length === n, LAYERS * WIDE);
    results.open_ms.push(Date.now() - t0);

    // Re-layout: the click, the layout in wasm, and the DOM update of every task and edge.
    results.arrange_ms.push(await page.evaluate(async () => {
      const t = performance.now();
      document.querySelector('[data-test=arrange]').click();
      await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
      return performance.now() - t;
    }));

    // Pan from a point of the background (a press on a task would move the task instead).
    const [cx, cy] = await page.evaluate(() => {
      const svg = document.querySelector('[data-test=canvas]');
      const r = svg.getBoundingClientRect();
      for (let y = r.top + 5; y < r.bottom; y += 7) {
        for (let x = r.left + 5; x < r.right - 330; x += 7) {
          const el = document.elementFromPoint(x, y);
          if (el && svg.contains(el) && !el.closest('.node, .edge, path, line')) return [x, y];
        }
      }
      throw new Error('no background point on the canvas');
    });
    pans.push(...await frames(page, async () => {
      for (let i = 0; i < 20; i++) await page.mouse.wheel(0, i % 2 ? 120 : -120);
      await page.mouse.move(cx, cy);
      await page.mouse.down();
      for (let i = 0; i < 40; i++) await page.mouse.move(cx + i * 8, cy + i * 4);
      await page.mouse.up();
    }));

    // Drag one task 40 steps: only it and its edges change. Fitted, 1,000 tasks are a few pixels
    // each; zoom in on the task first so the press lands on it.
    await page.locator('[data-test=fit]').click();
    const task = page.locator('.node[data-task="t25_10"] .node-box');
    let node = await task.boundingBox();
    await page.mouse.move(node.x + node.width / 2, node.y + node.height / 2);
    for (let i = 0; i < 12; i++) await page.mouse.wheel(0, -120);
    await page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => ok())));
    node = await task.boundingBox();
    const [nx, ny] = [node.x + node.width / 2, node.y + node.height / 2];
    drags.push(...await frames(page, async () => {
      await page.mouse.move(nx, ny);
      await page.mouse.down();
      for (let i = 0; i < 40; i++) await page.mouse.move(nx + i * 3, ny + i * 2);
      await page.mouse.up();
    }));
    const moved = await task.boundingBox();
    if (Math.abs(moved.x - node.x) < 50) throw new Error(`the task did not move (${node.x} -> ${moved.x}): the drag missed it`);

    const t1 = Date.now();
    await page.fill('[data-test=find]', 't49_19');
    await page.press('[data-test=find]', 'Enter');
    await page.waitForSelector('[data-test=task-panel][data-task="t49_19"]');
    results.find_ms.push(Date.now() - t1);
  }
  const summary = (xs) => ({ p50: round(pct(xs, 0.5)), p95: round(pct(xs, 0.95)), max: round(Math.max(...xs)), frames: xs.length });
  results.pan_zoom_frame_ms = summary(pans);
  results.drag_frame_ms = summary(drags);
  results.open_ms = results.open_ms.map(round);
  results.arrange_ms = results.arrange_ms.map(round);
  if (b.problems.length) results.problems = b.problems;
  await b.close();
} finally {
  await orrery.stop();
}
console.log(JSON.stringify(results));
