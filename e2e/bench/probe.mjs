// Where a drag's time goes with 1,000 tasks: script (handlers + reactive updates) vs the frame.
import { startOrrery, openBrowser, hydrated, signIn, ADMIN_EMAIL, ADMIN_PASSWORD } from '../harness.mjs';
const lines = ['name: big', 'tasks:'];
for (let l = 0; l < 50; l++) for (let i = 0; i < 20; i++) lines.push(`  - {id: t${l}_${i}, kind: noop${l ? `, depends_on: [t${l - 1}_${i}, t${l - 1}_${(i * 7 + 3) % 20}]` : ''}}`);
const orrery = await startOrrery();
try {
  await orrery.api('POST', '/api/v1/tenants/default/projects', { body: { slug: 'bench', name: 'Bench' } });
  const a = await orrery.api('POST', '/api/v1/tenants/default/workflows', { body: { project: 'bench', document: lines.join('\n') + '\n' } });
  const b = await openBrowser();
  await b.page.setViewportSize({ width: 1600, height: 1000 });
  await signIn(b.page, orrery.base, ADMIN_EMAIL, ADMIN_PASSWORD);
  await b.page.waitForURL(`${orrery.base}/t/default`);
  await b.page.goto(`${orrery.base}/t/default/workflows/${a.body.workflow.id}`);
  await hydrated(b.page);
  await b.page.waitForFunction(() => document.querySelectorAll('.node').length === 1000);
  const out = await b.page.evaluate(async () => {
    const svg = document.querySelector('[data-test=canvas]');
    const box = document.querySelector('.node[data-task="t25_10"] .node-box').getBoundingClientRect();
    const ev = (type, x, y) => new PointerEvent(type, { bubbles: true, clientX: x, clientY: y, button: 0, pointerId: 1, isPrimary: true });
    const target = document.querySelector('.node[data-task="t25_10"]');
    target.dispatchEvent(ev('pointerdown', box.x + 5, box.y + 5));
    const script = [];
    const frame = [];
    for (let i = 1; i <= 30; i++) {
      const t = performance.now();
      svg.dispatchEvent(ev('pointermove', box.x + 5 + i * 3, box.y + 5 + i * 2));
      const t1 = performance.now();
      await Promise.resolve(); await Promise.resolve();
      const t2 = performance.now();
      await new Promise((r) => setTimeout(r, 0));
      script.push([t1 - t, t2 - t1, performance.now() - t2]);
      const f = performance.now();
      await new Promise((r) => requestAnimationFrame(() => r()));
      frame.push(performance.now() - f);
    }
    svg.dispatchEvent(ev('pointerup', box.x + 95, box.y + 65));
    const pan = [];
    for (let i = 1; i <= 30; i++) {
      const t = performance.now();
      svg.dispatchEvent(new WheelEvent('wheel', { bubbles: true, cancelable: true, deltaY: i % 2 ? 100 : -100, clientX: 800, clientY: 500 }));
      await new Promise((r) => setTimeout(r, 0));
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      pan.push(performance.now() - t);
    }
    const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    return { sync_ms: med(script.map((x) => x[0])), micro_ms: med(script.map((x) => x[1])), timeout_ms: med(script.map((x) => x[2])), frame_after_ms: med(frame), wheel_to_second_frame_ms: med(pan) };
  });
  console.log(JSON.stringify(out));
  await b.close();
} finally { await orrery.stop(); }
