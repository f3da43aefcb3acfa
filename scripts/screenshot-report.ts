// Renders a load report (JSON, schema fnctl.load/v1) to HTML and takes a full-page PNG of it in
// headless Chromium: `npm run build && node dist/scripts/screenshot-report.js REPORT.json OUT.png
// [--width 1200] [--html OUT.html]`.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { renderHtmlReport } from '../load/report/html.js';
import { LoadReportSchema } from '../load/report/schema.js';
import { CHROMIUM_MISSING, hasChromium, launchChromium } from './chromium.js';

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { width: { type: 'string', default: '1200' }, html: { type: 'string' } },
  });
  const [input, output] = positionals;
  if (!input || !output) throw new Error('usage: screenshot-report REPORT.json OUT.png [--width 1200] [--html OUT.html]');
  const report = LoadReportSchema.parse(JSON.parse(readFileSync(input, 'utf8')));
  const html = renderHtmlReport(report);
  if (values.html) writeFileSync(values.html, html);
  if (!hasChromium()) throw new Error(CHROMIUM_MISSING);
  const browser = await launchChromium({ width: Number(values.width), height: 900 });
  try {
    const errors: string[] = [];
    const page = await browser.open(html, 'report', async (p) => {
      p.on('pageerror', (e) => errors.push(e.message));
      p.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    });
    if (errors.length > 0 || (await page.evaluate(() => document.documentElement.dataset.charts)) !== 'ready')
      throw new Error(`the report did not render cleanly: ${errors.join('; ') || 'charts not ready'}`);
    await page.screenshot({ path: output, fullPage: true, type: 'png' });
  } finally {
    await browser.close();
  }
  console.log(`${output}: ${Math.round(statSync(output).size / 1024)} KB`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
