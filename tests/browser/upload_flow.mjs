// Drives headless Chromium through the web page at $API_URL/app/, the way a dancer would:
// with $API_KEY set, the key form first (a wrong key, then the right one); a wrong file (a
// plain-words error), an upload refused with 429, then the clip at $CLIP_PATH through the file
// input, the job followed live to success (its first event stream is answered 401, as for a token
// that expired, so the page must get a new link), the results viewer (video, charts, summary,
// downloads, the music note), a screenshot at $SCREENSHOT_PATH, a reload (the key is remembered, the results open
// again), Change key, Delete, and last the key revoked by the test (a 401 brings the form back).
// Without $API_KEY the API is expected to be open: no form, no key steps.
// Prints one JSON report on stdout, which never holds the key itself (request headers are
// reported as "key", "wrong-key", "other" or null); tests/browser/test_web_page.py makes the
// assertions. Exit code 1 when a step could not run.
//
// Talks to the test over stdio for what only it can do: writes `@@ <request>` on stderr and waits
// for a line on stdin (`@@ revoke`: revoke $API_KEY now).
//
// Env: API_URL, CLIP_PATH, NOT_A_VIDEO_PATH, SCREENSHOT_PATH, CHROMIUM (default /usr/bin/chromium),
//      UPLOAD_BYTES_PER_SECOND (throttles the upload so its progress is visible; 0: no throttle),
//      API_KEY and WRONG_KEY (both empty: an open API).
import { createInterface } from 'node:readline';
import { env, launch, recordProblems } from './browser.mjs';

const API_URL = env('API_URL').replace(/\/+$/, '');
const API_ORIGIN = new URL(API_URL).origin;
const API_KEY = env('API_KEY', '');
const WRONG_KEY = env('WRONG_KEY', '');
const report = {
  steps: [], console: [], consoleAll: [], pageErrors: [], failedRequests: [], requests: [], apiCalls: [],
  keyed: Boolean(API_KEY),
};
const step = (name) => { report.steps.push(name); process.stderr.write(`[browser] ${name}\n`); };

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Ask the test to do something (e.g. revoke the key) and wait until it says it is done. */
async function askTest(what) {
  process.stderr.write(`@@ ${what}\n`);
  const { value, done } = await stdinLines.next();
  if (done || value.trim() !== 'done') throw new Error(`the test did not do "${what}": ${value}`);
}

// How a request authenticated itself, without ever putting the key in the report.
const authOf = (header) => {
  if (!header) return null;
  if (API_KEY && header === `Bearer ${API_KEY}`) return 'key';
  if (WRONG_KEY && header === `Bearer ${WRONG_KEY}`) return 'wrong-key';
  return 'other';
};
const pendingHeaders = [];
const ENVELOPE_401 = (message) => JSON.stringify({ error: { code: 'UNAUTHORIZED', message, details: {} } });

const browser = await launch({ autoplay: true });
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 1000 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  recordProblems(page, report);
  page.on('console', (msg) => report.consoleAll.push(`${msg.type()}: ${msg.text()}`));
  page.on('request', (request) => {
    const url = new URL(request.url());
    report.requests.push(`${request.method()} ${url.pathname}`);
    report.urlsWithKey = (report.urlsWithKey || 0) + (API_KEY && request.url().includes(API_KEY) ? 1 : 0);
    if (url.origin !== API_ORIGIN || url.pathname.startsWith('/app/')) return;
    // Every call of the API: how it authenticated (header, signed link, nothing).
    const call = { method: request.method(), path: url.pathname, token: url.searchParams.has('token'), type: request.resourceType() };
    report.apiCalls.push(call);
    pendingHeaders.push(request.allHeaders().catch(() => request.headers()).then((headers) => { call.auth = authOf(headers.authorization); }));
  });
  page.on('dialog', (dialog) => dialog.accept()); // the delete confirmation
  const ready = () => page.waitForFunction(() => !document.querySelector('#upload-card').hidden && !document.querySelector('#jobs-card').hidden);
  const storedKey = () => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('dance-analysis.api-key')).map((k) => localStorage.getItem(k)));
  const keyState = async () => ({
    formShown: await page.locator('#key-card').isVisible(),
    status: (await page.locator('#key-status').isVisible()) ? (await page.textContent('#key-status')).replace(/\s+/g, ' ').trim() : null,
    message: (await page.textContent('#key-message')).trim(),
    focused: await page.evaluate(() => document.activeElement?.id || null),
    stored: (await storedKey()).map((value) => (value === API_KEY ? 'key' : 'other')),
    jobsShown: await page.locator('#jobs .job').count(),
  });

  step('open the page');
  await page.goto(`${API_URL}/app/`);
  await page.waitForFunction(() => !/connecting/.test(document.querySelector('#mode-badge').textContent));
  report.modeBadge = (await page.textContent('#mode-badge')).trim();
  report.title = await page.title();
  await page.waitForFunction(() => !document.querySelector('#key-card').hidden || !document.querySelector('#upload-card').hidden);
  report.firstView = await keyState();

  if (API_KEY) {
    step('the key form: a wrong key');
    await page.screenshot({ path: env('SCREENSHOT_PATH').replace(/\.png$/, '-key-form.png') });
    await page.fill('#key-input', WRONG_KEY);
    await page.press('#key-input', 'Enter');
    await page.waitForSelector('#key-message.error');
    report.wrongKey = { ...(await keyState()), invalid: await page.getAttribute('#key-input', 'aria-invalid') };
    await page.screenshot({ path: env('SCREENSHOT_PATH').replace(/\.png$/, '-wrong-key.png') });

    step('the key form: the right key');
    await page.fill('#key-input', API_KEY);
    await page.click('#key-button');
    await ready();
    report.signedIn = await keyState();
  } else {
    await ready();
  }

  // Record what the page shows while things move: upload bar values, every job bar value and status.
  await page.evaluate(() => {
    window.__seen = { upload: [], jobProgress: [], statuses: [], stages: [] };
    const push = (list, value) => { if (list[list.length - 1] !== value) list.push(value); };
    new MutationObserver(() => push(window.__seen.upload, document.querySelector('#upload-progress').value))
      .observe(document.querySelector('#upload-progress'), { attributes: true });
    new MutationObserver(() => {
      const job = document.querySelector('#jobs .job'); // the newest
      if (!job) return;
      push(window.__seen.jobProgress, job.querySelector('progress').value);
      push(window.__seen.statuses, job.dataset.status);
      push(window.__seen.stages, job.querySelector('.job-stage').textContent);
    }).observe(document.querySelector('#jobs'), { attributes: true, childList: true, subtree: true, characterData: true });
  });

  step('a file that is not a video');
  await page.setInputFiles('#file-input', env('NOT_A_VIDEO_PATH'));
  await page.click('#upload-button');
  await page.waitForSelector('#upload-message.error');
  report.wrongFileMessage = await page.textContent('#upload-message');

  step('an upload refused with 429');
  // The server's own answer to a key with too many jobs (backend/limits.py), without queuing 20 jobs.
  const tooMany = {
    error: {
      code: 'RATE_LIMITED',
      message: 'This key already has 20 jobs waiting or running (at most 20); send more once some have finished.',
      details: { limit: 'queued_jobs', max: 20, retry_after_seconds: 60 },
    },
  };
  await page.route(`${API_URL}/analyze`, (route) => route.fulfill({
    status: 429, contentType: 'application/json', headers: { 'Retry-After': '60' }, body: JSON.stringify(tooMany),
  }), { times: 1 });
  await page.setInputFiles('#file-input', env('CLIP_PATH'));
  await page.click('#upload-button');
  await page.waitForFunction(() => /RATE_LIMITED/.test(document.querySelector('#upload-message').textContent));
  report.rateLimitedMessage = await page.textContent('#upload-message');
  // The first event stream is refused as an expired token would be: the page must ask for a new link.
  await page.route((url) => url.pathname.endsWith('/events'), (route) => route.fulfill({
    status: 401, contentType: 'application/json', headers: { 'WWW-Authenticate': 'Bearer' },
    body: ENVELOPE_401('The link has expired or is not valid: ask the API for a new one.'),
  }), { times: 1 });

  step('upload the clip');
  const throttle = Number(process.env.UPLOAD_BYTES_PER_SECOND || 0);
  const cdp = await context.newCDPSession(page);
  if (throttle > 0) {
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: throttle });
  }
  await page.evaluate(() => { window.__seen.upload = []; });
  await page.setInputFiles('#file-input', env('CLIP_PATH'));
  report.fileLabel = await page.textContent('#file-label');
  await page.check('input[name="profile"][value="fast"]');
  await page.click('#upload-button');
  await page.waitForSelector('#upload-message.ok', { timeout: 60000 });
  report.uploadMessage = await page.textContent('#upload-message');
  if (throttle > 0) {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  }

  step('follow the job to success');
  const job = page.locator('#jobs .job').first();
  report.jobId = await job.getAttribute('data-job-id');
  await page.waitForFunction(
    () => ['succeeded', 'failed', 'canceled'].includes(document.querySelector('#jobs .job')?.dataset.status),
    null, { timeout: 120000 },
  );
  report.finalStatus = await job.getAttribute('data-status');
  report.jobError = (await job.locator('.job-error').isVisible()) ? await job.locator('.job-error').textContent() : null;
  report.seen = await page.evaluate(() => window.__seen);
  report.jobText = (await job.textContent()).replace(/\s+/g, ' ').trim();
  if (report.finalStatus !== 'succeeded') throw new Error(`the job ended ${report.finalStatus}: ${report.jobError}`);

  step('open the results');
  await job.locator('button.open').click();
  await page.waitForSelector('#results:not([hidden]) .dancer canvas');
  await page.waitForFunction(() => document.querySelector('#player').readyState >= 2, null, { timeout: 30000 });
  report.resultsMessage = await page.textContent('#results-message');

  step('play the annotated video');
  const playback = await page.evaluate(async () => {
    const video = document.querySelector('#player');
    video.muted = true;
    await video.play();
    await new Promise((resolve) => setTimeout(resolve, 1200));
    video.pause();
    return { playedTo: video.currentTime };
  });
  // Seek to the middle: the chart cursor must follow.
  const cursorShift = await page.evaluate(async () => {
    const video = document.querySelector('#player');
    const canvas = document.querySelector('.dancer canvas');
    const snapshot = () => canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const seekTo = (t) => new Promise((resolve) => {
      video.addEventListener('seeked', () => requestAnimationFrame(() => resolve()), { once: true });
      video.currentTime = t;
    });
    await seekTo(0.2);
    const before = snapshot();
    await seekTo(video.duration / 2);
    const after = snapshot();
    let changed = 0;
    for (let i = 0; i < before.length; i += 4) if (before[i] !== after[i] || before[i + 1] !== after[i + 1]) changed += 1;
    return changed;
  });
  report.video = await page.evaluate(() => {
    const v = document.querySelector('#player');
    return {
      src: v.currentSrc, readyState: v.readyState, duration: v.duration, videoWidth: v.videoWidth,
      videoHeight: v.videoHeight, error: v.error && { code: v.error.code, message: v.error.message },
    };
  });
  report.video.playedTo = playback.playedTo;
  report.cursorPixelsChanged = cursorShift;

  report.charts = await page.evaluate(() => [...document.querySelectorAll('.dancer canvas')].map((canvas) => {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    let colors = new Set();
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) {
        inked += 1;
        if (colors.size < 64) colors.add(`${data[i] >> 4},${data[i + 1] >> 4},${data[i + 2] >> 4}`);
      }
    }
    return { width: canvas.width, height: canvas.height, inkedPixels: inked, colors: colors.size };
  }));
  report.dancers = await page.evaluate(() => [...document.querySelectorAll('.dancer')].map((node) => ({
    trackId: node.dataset.trackId,
    heading: node.querySelector('h3').textContent,
    facts: node.querySelector('.dancer-facts').textContent.replace(/\s+/g, ' ').trim(),
    angleRows: node.querySelectorAll('table')[0].querySelectorAll('tbody tr').length,
    speedRows: node.querySelectorAll('table')[1].querySelectorAll('tbody tr').length,
  })));
  // The music: this clip's audio is a plain tone, too short to find beats in; the page says why, quietly.
  report.music = await page.evaluate(() => ({
    shown: !document.querySelector('#music').hidden,
    text: document.querySelector('#music-text').textContent,
    quiet: document.querySelector('#music-text').classList.contains('quiet'),
    beatMarks: document.querySelectorAll('.beat-mark').length,
    onBeat: [...document.querySelectorAll('.dancer .on-beat')].map((node) => node.textContent),
  }));
  report.downloads = await page.evaluate(() => [...document.querySelectorAll('#downloads a')].map((a) => ({ text: a.textContent, href: a.href })));
  report.downloadStatus = {};
  for (const link of report.downloads) {
    const response = await page.request.get(link.href);
    report.downloadStatus[link.text] = response.status();
    if (link.text === 'beats.json' && response.ok()) report.beatsJson = await response.json();
  }

  step('screenshot');
  await page.evaluate(() => { document.querySelector('#player').currentTime = document.querySelector('#player').duration / 2; });
  await page.waitForTimeout(400);
  await page.screenshot({ path: env('SCREENSHOT_PATH'), fullPage: true });
  // The same on a phone-sized screen (layout only; nothing is asserted on it).
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: env('SCREENSHOT_PATH').replace(/\.png$/, '-phone.png'), fullPage: true });
  report.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  await page.setViewportSize({ width: 1360, height: 1000 });

  step('reload: the key is remembered, the results open again');
  const callsBeforeReload = report.apiCalls.length;
  await page.reload();
  await ready();
  await page.waitForSelector('#results:not([hidden]) .dancer canvas');
  await page.waitForFunction(() => document.querySelector('#player').readyState >= 2, null, { timeout: 30000 });
  report.afterReload = {
    ...(await keyState()),
    meChecked: report.apiCalls.slice(callsBeforeReload).filter((call) => call.path === '/me').length,
    videoSrc: await page.evaluate(() => document.querySelector('#player').currentSrc),
    hash: await page.evaluate(() => location.hash),
  };

  if (API_KEY) {
    step('change key: forget it, then the same key again');
    await page.click('#key-forget');
    await page.waitForSelector('#key-card:not([hidden])');
    report.afterForget = { ...(await keyState()), uploadShown: await page.locator('#upload-card').isVisible() };
    await page.fill('#key-input', API_KEY);
    await page.press('#key-input', 'Enter');
    await ready();
    await page.waitForSelector(`#jobs .job[data-job-id="${report.jobId}"]`);
    report.afterSecondSignIn = await keyState();
  }

  step('delete the job');
  const row = page.locator(`#jobs .job[data-job-id="${report.jobId}"]`);
  await row.locator('button.delete').click();
  await page.waitForFunction((id) => !document.querySelector(`#jobs .job[data-job-id="${id}"]`), report.jobId);
  report.resultsHiddenAfterDelete = await page.locator('#results').isHidden();
  const headers = API_KEY ? { Authorization: `Bearer ${API_KEY}` } : {};
  report.afterDelete = (await page.request.get(`${API_URL}/jobs/${report.jobId}`, { headers })).status();

  if (API_KEY) {
    step('the key is revoked: the next call brings the form back');
    await askTest('revoke');
    await page.click('#refresh-jobs');
    await page.waitForSelector('#key-card:not([hidden])');
    await page.waitForFunction(() => document.querySelector('#key-message').textContent.trim() !== '');
    report.afterRevoke = { ...(await keyState()), uploadShown: await page.locator('#upload-card').isVisible() };
  }
  await Promise.all(pendingHeaders);
  step('done');
} catch (error) {
  report.failure = String(error && error.stack ? error.stack : error);
  exitCode = 1;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report, null, 2));
process.exit(exitCode);
