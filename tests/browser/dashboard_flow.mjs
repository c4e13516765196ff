// Drives headless Chromium at the RQ dashboard (backend/dashboard.py) the way an operator's browser
// meets it: logged in (the browser answers every basic-auth challenge, as one with the login cached
// does), first on another site's page that posts "empty the queue" to the dashboard, then on the
// dashboard's own jobs page, clicking "Empty queue" and "Yes". Prints one JSON report on stdout;
// tests/browser/test_dashboard.py makes the assertions (and checks Redis). Exit code 1 when a step
// could not run.
//
// Env: DASHBOARD_URL, EVIL_URL (the other site's page), QUEUE, JOB_ID, DASHBOARD_USER,
//      DASHBOARD_PASSWORD, CHROMIUM (default /usr/bin/chromium).
import { env, launch } from './browser.mjs';

const DASHBOARD_URL = env('DASHBOARD_URL').replace(/\/+$/, '');
const QUEUE = env('QUEUE');
const JOB_ID = env('JOB_ID');
const EMPTY_PATH = `/queue/${QUEUE}/queued/empty`;
const report = { steps: [], pageErrors: [] };
const step = (name) => { report.steps.push(name); process.stderr.write(`[browser] ${name}\n`); };

// The final answer to a POST to the empty URL (the browser retries a 401 with the login itself).
const emptyAnswer = (page) => page.waitForResponse(
  (response) => new URL(response.url()).pathname === EMPTY_PATH && response.request().method() === 'POST'
    && response.status() !== 401,
);
const describe = async (response) => ({
  status: response.status(),
  origin: (await response.request().allHeaders()).origin ?? null,
  body: await response.text(),
});

const browser = await launch({ autoplay: false });
let exitCode = 0;
try {
  const context = await browser.newContext({
    httpCredentials: { username: env('DASHBOARD_USER'), password: env('DASHBOARD_PASSWORD') },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on('pageerror', (error) => report.pageErrors.push(String(error)));

  step('another site posts "empty the queue" to the dashboard');
  const crossSite = emptyAnswer(page);
  await page.goto(env('EVIL_URL'));
  report.crossSite = await describe(await crossSite);

  step('open the dashboard\'s jobs page');
  await page.goto(`${DASHBOARD_URL}/0/view/jobs/${QUEUE}/queued/8/asc/1`);
  await page.waitForSelector(`tr[data-job-id="${JOB_ID}"]`);
  report.rowsBefore = await page.locator('tr[data-role=job]').count();
  report.frameHeaders = await page.evaluate(async () => {
    const response = await fetch(window.location.href);
    return { csp: response.headers.get('content-security-policy'), xfo: response.headers.get('x-frame-options') };
  });

  step('click "Empty queue", then "Yes"');
  await page.click('#empty-btn');
  await page.waitForSelector('#confirmation-modal-yes', { state: 'visible' });
  const own = emptyAnswer(page);
  await page.click('#confirmation-modal-yes');
  report.sameOrigin = await describe(await own);
  await page.waitForSelector('text=No jobs.');
  report.rowsAfter = await page.locator('tr[data-role=job]').count();
} catch (error) {
  report.failure = String(error && error.stack ? error.stack : error);
  exitCode = 1;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
process.exit(exitCode);
