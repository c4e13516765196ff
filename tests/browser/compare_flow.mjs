// Drives headless Chromium through what issue 12 gives a dancer, at $API_URL/app/: a reference clip
// with music ($REFERENCE_CLIP, clicks at a known tempo) uploaded and its results opened (beat marks
// under each chart, each dancer's "on the beat" and "in sync", the group's least-together moments,
// which seek the video); an attempt ($ATTEMPT_CLIP) uploaded with that reference chosen in the
// upload form (a comparison follows it by itself); a second comparison started with "Compare with…"
// on the attempt; the compare view of each (score, similarity chart, worst moments; a worst moment
// clicked seeks every video; the two original videos played in step); a comparison deleted.
// With $API_KEY the key form comes first and every call must carry the key.
//
// Prints one JSON report on stdout (the page's words and numbers beside the API's own JSON);
// tests/browser/test_compare_page.py makes the assertions. Exit code 1 when a step could not run.
// Env: API_URL, API_KEY ('' for an open API), REFERENCE_CLIP, ATTEMPT_CLIP, SCREENSHOT_PREFIX
//      (screenshots are <prefix>-<name>.png), CHROMIUM (default /usr/bin/chromium).
import { env, launch, recordProblems } from './browser.mjs';

const API_URL = env('API_URL').replace(/\/+$/, '');
const API_ORIGIN = new URL(API_URL).origin;
const API_KEY = env('API_KEY', '');
const SHOT = (name) => `${env('SCREENSHOT_PREFIX')}-${name}.png`;
const JOB_TIMEOUT = 180000;
const report = { steps: [], console: [], pageErrors: [], failedRequests: [], apiCalls: [], keyed: Boolean(API_KEY) };
const step = (name) => { report.steps.push(name); process.stderr.write(`[browser] ${name}\n`); };
const pendingHeaders = [];

const browser = await launch({ autoplay: true });
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 1000 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  recordProblems(page, report);
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.origin !== API_ORIGIN || url.pathname.startsWith('/app/')) return;
    const call = { method: request.method(), path: url.pathname, query: url.search, token: url.searchParams.has('token'), type: request.resourceType() };
    report.apiCalls.push(call);
    pendingHeaders.push(request.allHeaders().catch(() => request.headers()).then((headers) => {
      const auth = headers.authorization;
      call.auth = !auth ? null : auth === `Bearer ${API_KEY}` ? 'key' : 'other';
    }));
  });
  page.on('dialog', (dialog) => dialog.accept()); // the delete confirmation

  const headers = API_KEY ? { Authorization: `Bearer ${API_KEY}` } : {};
  const apiGet = async (path) => {
    const response = await page.request.get(API_URL + path, { headers });
    if (!response.ok()) throw new Error(`GET ${path}: ${response.status()} ${await response.text()}`);
    return response.json();
  };
  const row = (id) => page.locator(`#jobs .job[data-job-id="${id}"]`);
  const waitJob = async (id) => {
    await page.waitForSelector(`#jobs .job[data-job-id="${id}"]`);
    await page.waitForFunction((jobId) => ['succeeded', 'failed', 'canceled'].includes(
      document.querySelector(`#jobs .job[data-job-id="${jobId}"]`)?.dataset.status), id, { timeout: JOB_TIMEOUT });
    const view = await apiGet(`/jobs/${id}`);
    if (view.status !== 'succeeded') throw new Error(`job ${id} ended ${view.status}: ${JSON.stringify(view.error)}`);
    return view;
  };
  const rowState = (id) => page.evaluate((jobId) => {
    const node = document.querySelector(`#jobs .job[data-job-id="${jobId}"]`);
    const shown = (sel) => { const n = node.querySelector(sel); return Boolean(n && !n.hidden && n.offsetParent !== null); };
    return {
      kind: node.dataset.kind, status: node.dataset.status, kindTag: shown('.kind') ? node.querySelector('.kind').textContent : null,
      name: node.querySelector('.job-name').textContent, meta: node.querySelector('.job-meta').textContent,
      openText: node.querySelector('.open').textContent, compareShown: shown('.compare'),
    };
  }, id);
  /** Upload a clip through the form, with a reference chosen in it or none; returns the 202 body. */
  const uploadClip = async (path, reference = null) => {
    await page.setInputFiles('#file-input', path);
    if (reference) {
      await page.waitForSelector(`#reference-select option[value="${reference.job_id}"]`, { state: 'attached' });
      await page.selectOption('#reference-select', reference.job_id);
      await page.selectOption('#upload-mirror', reference.mirror);
    } else {
      await page.selectOption('#reference-select', '');
    }
    const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/analyze' && r.request().method() === 'POST');
    await page.click('#upload-button');
    const body = await (await answer).json();
    await page.waitForSelector('#upload-message.ok');
    return body;
  };
  /** Wait until no video of the page is seeking, then one frame more. */
  const settled = () => page.waitForFunction(() => [...document.querySelectorAll('video')].every((v) => !v.seeking))
    .then(() => page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve()))));
  const times = () => page.evaluate(() => Object.fromEntries(['player', 'compare-player', 'reference-player', 'attempt-player']
    .map((id) => [id, document.getElementById(id).currentTime])));

  step('open the page');
  await page.goto(`${API_URL}/app/`);
  await page.waitForFunction(() => !document.querySelector('#key-card').hidden || !document.querySelector('#upload-card').hidden);
  if (API_KEY) {
    await page.fill('#key-input', API_KEY);
    await page.click('#key-button');
  }
  await page.waitForFunction(() => !document.querySelector('#upload-card').hidden && !document.querySelector('#jobs-card').hidden);
  // Every stage text each job's row showed, in order.
  await page.evaluate(() => {
    window.__stages = {};
    new MutationObserver(() => {
      for (const node of document.querySelectorAll('#jobs .job')) {
        const seen = (window.__stages[node.dataset.jobId] ??= []);
        const text = node.querySelector('.job-stage').textContent.replace(/ · .*/, '');
        if (text && seen[seen.length - 1] !== text) seen.push(text);
      }
    }).observe(document.querySelector('#jobs'), { childList: true, subtree: true, characterData: true, attributes: true });
  });

  step('upload the reference (music at a known tempo)');
  const referenceAnswer = await uploadClip(env('REFERENCE_CLIP'));
  const referenceId = referenceAnswer.job_id;
  report.reference = { answer: referenceAnswer, view: await waitJob(referenceId) };
  report.reference.row = await rowState(referenceId);

  step('the reference results: beat marks, on the beat, in sync');
  await row(referenceId).locator('button.open').click();
  await page.waitForSelector('#results:not([hidden]) .dancer canvas');
  await page.waitForSelector('#music:not([hidden])');
  await page.waitForFunction(() => document.querySelector('#player').readyState >= 2, null, { timeout: 30000 });
  report.reference.beats = await apiGet(`/jobs/${referenceId}/results/beats.json`);
  // What the assertions need of metrics.json (its angle series are long and not shown as numbers).
  const metrics = await apiGet(`/jobs/${referenceId}/results/metrics.json`);
  report.reference.metrics = {
    schema_version: metrics.schema_version, video: metrics.video, music: metrics.music,
    synchrony: { ...metrics.synchrony, series: null },
    dancers: metrics.dancers.map((d) => ({ track_id: d.track_id, on_beat: d.on_beat, series: { time: d.series.time.slice(-1) } })),
  };
  report.reference.page = await page.evaluate(() => ({
    music: document.querySelector('#music-text').textContent,
    musicQuiet: document.querySelector('#music-text').classList.contains('quiet'),
    playerDuration: document.querySelector('#player').duration,
    dancers: [...document.querySelectorAll('.dancer')].map((node) => ({
      trackId: Number(node.dataset.trackId),
      onBeat: node.querySelector('.on-beat')?.textContent ?? null,
      inSync: node.querySelector('.in-sync')?.textContent ?? null,
      beatMarks: [...node.querySelectorAll('.beat-strip .beat-mark')].map((m) => parseFloat(m.style.left) / 100),
      accentMarks: [...node.querySelectorAll('.beat-strip .accent-mark')].map((m) => ({ at: parseFloat(m.style.left) / 100, on: m.classList.contains('on') })),
      stripLabel: node.querySelector('.beat-strip')?.getAttribute('aria-label') ?? null,
    })),
    together: {
      shown: !document.querySelector('#together').hidden,
      text: document.querySelector('#together-text').textContent,
      moments: [...document.querySelectorAll('#together-moments button')].map((b) => ({ start: Number(b.dataset.start), text: b.textContent })),
    },
    downloads: [...document.querySelectorAll('#downloads a')].map((a) => a.textContent),
  }));
  report.reference.togetherSeeks = [];
  for (const [k, moment] of report.reference.page.together.moments.slice(0, 2).entries()) {
    await page.locator('#together-moments button').nth(k).click();
    await settled();
    report.reference.togetherSeeks.push({ start: moment.start, player: (await times()).player });
  }
  await page.screenshot({ path: SHOT('results'), fullPage: true });

  step('upload the attempt with the reference chosen in the upload form');
  const attemptAnswer = await uploadClip(env('ATTEMPT_CLIP'), { job_id: referenceId, mirror: 'on' });
  const attemptId = attemptAnswer.job_id;
  report.attempt = { answer: attemptAnswer, view: await waitJob(attemptId) };
  report.attempt.row = await rowState(attemptId);
  report.formComparison = { view: await waitJob(attemptAnswer.comparison_job_id) };
  report.formComparison.row = await rowState(attemptAnswer.comparison_job_id);

  step('"Compare with…" on the attempt');
  await row(attemptId).locator('button.compare').click();
  await page.waitForSelector('#compare-dialog[open] #compare-reference:not([disabled])');
  report.dialog = await page.evaluate(() => ({
    options: [...document.querySelectorAll('#compare-reference option')].map((o) => o.value),
    focused: document.activeElement?.id,
  }));
  await page.selectOption('#compare-reference', referenceId);
  // Who is who: each video's dancers, longest in view first; the attempt (filmed in class) has two.
  await page.waitForFunction(([ref, att]) => document.querySelector('#compare-reference-dancer').dataset.job === ref
    && document.querySelector('#compare-attempt-dancer').dataset.job === att, [referenceId, attemptId]);
  await page.screenshot({ path: SHOT('dialog') });
  const dancerOptions = (selector) => page.evaluate((s) => {
    const select = document.querySelector(s);
    return { disabled: select.disabled, options: [...select.options].map((o) => ({ value: o.value, text: o.textContent })) };
  }, selector);
  report.dialog.referenceDancers = await dancerOptions('#compare-reference-dancer');
  report.dialog.attemptDancers = await dancerOptions('#compare-attempt-dancer');
  const lastAttemptDancer = report.dialog.attemptDancers.options.at(-1).value; // not the API's default when there are two
  await page.selectOption('#compare-attempt-dancer', lastAttemptDancer);
  report.dialog.chosenAttemptDancer = Number(lastAttemptDancer);
  await page.check('#compare-form input[name="mirror"][value="auto"]');
  const compareAnswer = page.waitForResponse((r) => new URL(r.url()).pathname === '/compare' && r.request().method() === 'POST');
  await page.click('#compare-start');
  const started = await compareAnswer;
  report.dialogComparison = { status: started.status(), answer: await started.json(), body: JSON.parse(started.request().postData()) };
  const comparisonId = report.dialogComparison.answer.job_id;
  await page.waitForFunction(() => !document.querySelector('#compare-dialog').open);
  report.dialogComparison.view = await waitJob(comparisonId);
  report.dialogComparison.row = await rowState(comparisonId);

  step('the compare view');
  await row(comparisonId).locator('button.open').click();
  await page.waitForSelector('#compare:not([hidden]) #worst-moments li, #compare:not([hidden]) #compare-message:not(:empty)');
  await page.waitForFunction(() => document.querySelector('#compare-score').textContent !== '–');
  await page.waitForFunction(() => ['compare-player', 'reference-player', 'attempt-player']
    .every((id) => document.getElementById(id).readyState >= 2), null, { timeout: 30000 });
  const doc = await apiGet(`/jobs/${comparisonId}/results/comparison.json`);
  report.dialogComparison.doc = { ...doc, series: { ...doc.series, keypoints: null } };
  report.dialogComparison.page = await page.evaluate(() => {
    const canvas = document.querySelector('#similarity-chart');
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 3] && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) inked += 1;
    const video = (id) => {
      const v = document.getElementById(id);
      return { src: v.currentSrc, duration: v.duration, width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code };
    };
    return {
      title: document.querySelector('#compare-title').textContent,
      meta: document.querySelector('#compare-meta').textContent,
      score: document.querySelector('#compare-score').textContent,
      orientation: document.querySelector('#compare-orientation').textContent,
      chartInked: inked, chartPixels: canvas.width * canvas.height,
      worst: [...document.querySelectorAll('#worst-moments button')].map((b) => ({
        start: Number(b.dataset.start), attemptStart: Number(b.dataset.attemptStart), text: b.textContent,
      })),
      videos: { side: video('compare-player'), reference: video('reference-player'), attempt: video('attempt-player') },
      downloads: [...document.querySelectorAll('#compare-downloads a')].map((a) => a.textContent),
      hash: location.hash,
    };
  });

  step('a worst moment clicked seeks every video');
  report.dialogComparison.seeks = [];
  const moments = report.dialogComparison.page.worst;
  for (const k of [...new Set([moments.length - 1, 0])].filter((k) => k >= 0)) {
    await page.locator('#worst-moments button').nth(k).click();
    await settled();
    report.dialogComparison.seeks.push({ moment: k, ...(await times()) });
  }
  await page.screenshot({ path: SHOT('compare'), fullPage: true });

  step('the two original videos, kept in step');
  await page.check('input[name="compare-view"][value="pair"]');
  await settled();
  report.dialogComparison.pairShown = await page.evaluate(() => !document.querySelector('#compare-pair').hidden && document.querySelector('#compare-side').hidden);
  report.dialogComparison.afterSwitch = await times();
  report.dialogComparison.samples = await page.evaluate(async () => {
    const ref = document.querySelector('#reference-player');
    const att = document.querySelector('#attempt-player');
    ref.muted = true;
    ref.currentTime = Math.min(0.5, ref.duration / 4);
    await new Promise((resolve) => ref.addEventListener('seeked', resolve, { once: true }));
    await ref.play();
    const samples = [];
    const end = Math.min(ref.duration - 0.3, ref.currentTime + 2.5);
    while (!ref.paused && ref.currentTime < end) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      samples.push({ reference: ref.currentTime, attempt: att.currentTime, attemptPlaying: !att.paused, rate: att.playbackRate });
    }
    ref.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { samples, afterPause: { reference: ref.currentTime, attempt: att.currentTime, attemptPaused: att.paused } };
  });
  await page.screenshot({ path: SHOT('compare-pair'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: SHOT('compare-phone'), fullPage: true });
  report.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  await page.setViewportSize({ width: 1360, height: 1000 });

  step('the comparison started from the upload form, from the attempt\'s results');
  const formId = attemptAnswer.comparison_job_id;
  await row(attemptId).locator('button.open').click();
  await page.waitForSelector('#results:not([hidden]) .dancer canvas');
  await page.waitForSelector('#results-comparison:not([hidden])');
  await page.click('#results-comparison');
  await page.waitForFunction((id) => location.hash === `#job=${id}` && document.querySelector('#compare-score').textContent !== '–', formId);
  const formDoc = await apiGet(`/jobs/${formId}/results/comparison.json`);
  report.formComparison.doc = { ...formDoc, series: null };
  report.formComparison.page = await page.evaluate(() => ({
    score: document.querySelector('#compare-score').textContent,
    orientation: document.querySelector('#compare-orientation').textContent,
    worst: document.querySelectorAll('#worst-moments button').length,
    resultsHidden: document.querySelector('#results').hidden,
    analysisLinks: ['#open-reference', '#open-attempt'].map((id) => (document.querySelector(id).hidden ? null : document.querySelector(id).dataset.jobId)),
  }));
  // And back: the reference's results, from the compare view.
  await page.click('#open-reference');
  await page.waitForFunction((id) => location.hash === `#job=${id}` && !document.querySelector('#results').hidden, referenceId);
  report.formComparison.backToReference = await page.evaluate(() => ({ compareHidden: document.querySelector('#compare').hidden, title: document.querySelector('#results-title').textContent }));

  report.stages = await page.evaluate(() => window.__stages);

  step('delete a comparison');
  await row(comparisonId).locator('button.delete').click();
  await page.waitForFunction((id) => !document.querySelector(`#jobs .job[data-job-id="${id}"]`), comparisonId);
  report.afterDelete = (await page.request.get(`${API_URL}/jobs/${comparisonId}`, { headers })).status();
  report.analysesLeft = await page.evaluate(() => [...document.querySelectorAll('#jobs .job[data-kind="analysis"]')].map((n) => n.dataset.jobId));
  await Promise.all(pendingHeaders);
  step('done');
} catch (error) {
  report.failure = String(error && error.stack ? error.stack : error);
  exitCode = 1;
} finally {
  await browser.close();
}
// A pipe takes a big write in pieces: exit once all of it is out.
process.stdout.write(JSON.stringify(report, null, 2), () => process.exit(exitCode));
